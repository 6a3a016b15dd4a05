import { arg, defineCommand } from '../src/engine/command';

export default defineCommand({
  id: 'approve',
  summary: 'Approve a plan waiting for approval (same as its Approve button); never your own destructive plan',
  args: [arg.job('job')],
  risk: 'read',
  decision: 'approve',
});
