import { arg, defineCommand } from '../src/engine/command';

export default defineCommand({
  id: 'cancel',
  summary: 'Cancel a job: a waiting plan never runs; a running one stops between steps and reports the state it left',
  args: [arg.job('job')],
  risk: 'read',
  decision: 'cancel',
});
