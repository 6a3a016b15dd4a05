import { createEtcdMemberClient } from '../src/exec/etcd-client';
it('probe', async () => {
  const c = createEtcdMemberClient({ endpoint: 'http://127.0.0.1:23791', deadlineMs: 5000 });
  let n = 0;
  try {
    const r = await c.snapshot((b) => { n += b.length; });
    console.log('ok', r, n);
  } catch (e) { console.log('err', e, n); }
  c.close();
});
