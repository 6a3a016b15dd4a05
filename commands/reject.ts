import { arg, defineCommand } from '../src/engine/command';

export default defineCommand({
  id: 'reject',
  summary: 'Reject a plan waiting for approval: nothing of it runs',
  args: [arg.job('job')],
  risk: 'read',
  decision: 'reject',
});
