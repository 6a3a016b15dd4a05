import { defineCommand, usage } from '../src/engine/command';

export default defineCommand({
  id: 'help',
  summary: 'This list of commands',
  args: [],
  risk: 'read',
  reply: ({ commands, config }) => ({
    title: 'etcd-medic commands',
    tables: [{
      columns: ['COMMAND', 'RISK', 'WHAT IT DOES'],
      rows: commands.map((c) => [[usage(c), ...(c.aliases ?? []).map((a) => `/etcd ${a}`)].join(' · '), c.risk, c.summary]),
    }],
    notes: [
      'Arguments are names: letters, digits, ".", "_" and "-".',
      `Known clusters: ${config.clusters.map((c) => c.name).join(', ')}`,
    ],
  }),
});
