/** Environment settings that shape behaviour under load and shutdown (issue 8). */
import { readSettings } from '../src/settings';

const base = { MEDIC_SSH_KEY: 'k', MEDIC_ROLE: 'worker' };

describe('settings', () => {
  it('the per-user request limit: 20 by default, set or turned off (0) with MEDIC_REQUEST_LIMIT, bad values refused', () => {
    expect(readSettings(base).requestLimit).toBe(20);
    expect(readSettings({ ...base, MEDIC_REQUEST_LIMIT: '50' }).requestLimit).toBe(50);
    expect(readSettings({ ...base, MEDIC_REQUEST_LIMIT: '0' }).requestLimit).toBe(0);
    expect(() => readSettings({ ...base, MEDIC_REQUEST_LIMIT: 'lots' })).toThrow(/MEDIC_REQUEST_LIMIT/);
  });

  it('the shutdown grace: 20 s by default, set with MEDIC_SHUTDOWN_GRACE_MS', () => {
    expect(readSettings(base).shutdownGraceMs).toBe(20000);
    expect(readSettings({ ...base, MEDIC_SHUTDOWN_GRACE_MS: '5000' }).shutdownGraceMs).toBe(5000);
    expect(() => readSettings({ ...base, MEDIC_SHUTDOWN_GRACE_MS: '-1' })).toThrow(/MEDIC_SHUTDOWN_GRACE_MS/);
  });

  it('the anchor file of the audit log comes from MEDIC_AUDIT_ANCHOR_FILE', () => {
    expect(readSettings({ ...base, MEDIC_AUDIT_ANCHOR_FILE: '/var/lib/etcd-medic/anchors.jsonl' }).audit.anchorFile).toBe('/var/lib/etcd-medic/anchors.jsonl');
    expect(readSettings(base).audit.anchorFile).toBeUndefined();
  });
});
