import { defineCommand } from '../src/engine/command';

export default defineCommand({
  id: 'clusters',
  summary: 'The clusters this bot knows, with their nodes and the channels allowed to act on them',
  args: [],
  risk: 'read',
  reply: ({ config }) => ({
    title: 'etcd clusters',
    tables: [{
      columns: ['CLUSTER', 'NODES', 'RUNTIME', 'CHANNELS'],
      rows: config.clusters.map((c) => [
        c.name,
        c.nodes.map((n) => n.name).join(', '),
        c.runtime,
        c.channels.join(', '),
      ]),
    }],
    next: config.clusters.slice(0, 1).map((c) => `/etcd status ${c.name}`),
  }),
});
