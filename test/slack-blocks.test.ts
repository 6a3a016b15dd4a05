import { BLOCK_TEXT_BUDGET, renderReport, SLACK_LIMITS } from '../src/adapters/slack/blocks';
import type { Report } from '../src/engine/report';
import { parseBlocks } from './support/fake-slack';

type AnyBlock = { type: string; text?: { text: string }; fields?: Array<{ text: string }>; elements?: Array<{ text?: string }> };

/** Every text in the blocks, for limit and content checks. */
function texts(blocks: object[]): string[] {
  const out: string[] = [];
  for (const b of blocks as AnyBlock[]) {
    if (b.text) out.push(b.text.text);
    for (const f of b.fields ?? []) out.push(f.text);
    for (const e of b.elements ?? []) if (e.text) out.push(e.text);
  }
  return out;
}

function expectWithinLimits(msg: { text: string; blocks: object[] }): void {
  expect(parseBlocks(msg.blocks).errors).toEqual([]);
  const blocks = msg.blocks as AnyBlock[];
  expect(blocks.length).toBeLessThanOrEqual(SLACK_LIMITS.blocks);
  for (const b of blocks) {
    if (b.type === 'header') expect(b.text!.text.length).toBeLessThanOrEqual(SLACK_LIMITS.headerText);
    if (b.type === 'section') {
      expect(b.text !== undefined || b.fields !== undefined).toBe(true);
      if (b.text) expect(b.text.text.length).toBeLessThanOrEqual(SLACK_LIMITS.sectionText);
      if (b.fields) {
        expect(b.fields.length).toBeLessThanOrEqual(SLACK_LIMITS.fields);
        for (const f of b.fields) expect(f.text.length).toBeLessThanOrEqual(SLACK_LIMITS.fieldText);
      }
    }
    if (b.type === 'context') expect(b.elements!.length).toBeLessThanOrEqual(SLACK_LIMITS.contextElements);
  }
  const total = texts(msg.blocks).reduce((n, t) => n + t.length, 0);
  expect(total).toBeLessThanOrEqual(BLOCK_TEXT_BUDGET);
  expect(msg.text.length).toBeGreaterThan(0);
  expect(msg.text.length).toBeLessThanOrEqual(SLACK_LIMITS.messageText);
}

const memberTable = {
  title: 'Members',
  columns: ['name', 'id', 'endpoint', 'leader', 'db size'],
  rows: [
    ['node1', '8e9e05c52164694d', 'https://10.0.0.1:2379', 'yes', '24 MB'],
    ['node2', '91bc3c398fb3c146', 'https://10.0.0.2:2379', 'no', '24 MB'],
    ['node3', 'fd422379fda50e48', 'https://10.0.0.3:2379', 'no', 'unreachable'],
  ],
};

describe('renderReport', () => {
  it('renders each part of a report in order', () => {
    const report: Report = {
      title: 'etcd status — lab',
      verdict: { level: 'warn', text: 'degraded: 2 of 3 members healthy' },
      fields: [{ label: 'Cluster', value: 'lab' }, { label: 'Quorum', value: '2/3' }],
      tables: [memberTable],
      notes: ['node3 unreachable: connect ECONNREFUSED'],
      next: ['/etcd replace-member lab node3'],
      context: ['collected 2024-05-01T10:00:00Z', 'job 42'],
    };
    const msg = renderReport(report);
    expectWithinLimits(msg);
    const blocks = msg.blocks as AnyBlock[];
    expect(blocks.map((b) => b.type)).toEqual(['header', 'section', 'section', 'section', 'section', 'section', 'context']);
    expect(blocks[0].text!.text).toBe('etcd status — lab');
    expect(blocks[1].text!.text).toBe(':warning: *degraded: 2 of 3 members healthy*');
    expect(blocks[2].fields!.map((f) => f.text)).toEqual(['*Cluster*\nlab', '*Quorum*\n2/3']);
    const table = blocks[3].text!.text;
    expect(table).toMatch(/^\*Members\*\n```\nname {3}id {16}endpoint/);
    expect(table).toContain('node3  fd422379fda50e48  https://10.0.0.3:2379  no      unreachable');
    expect(table.endsWith('```')).toBe(true);
    expect(blocks[4].text!.text).toBe('• node3 unreachable: connect ECONNREFUSED');
    expect(blocks[5].text!.text).toBe('*Next steps*\n• `/etcd replace-member lab node3`');
    expect(blocks[6].elements!.map((e) => e.text)).toEqual(['collected 2024-05-01T10:00:00Z', 'job 42']);
  });

  it.each([
    ['ok', ':white_check_mark:'],
    ['warn', ':warning:'],
    ['critical', ':rotating_light:'],
    ['info', ':information_source:'],
  ] as const)('marks a %s verdict with %s', (level, emoji) => {
    const msg = renderReport({ title: 't', verdict: { level, text: 'x' } });
    expect((msg.blocks[1] as AnyBlock).text!.text.startsWith(`${emoji} `)).toBe(true);
  });

  it('puts title, verdict and every table cell in the text fallback', () => {
    const msg = renderReport({ title: 'etcd status — lab', verdict: { level: 'critical', text: 'quorum lost' }, tables: [memberTable] });
    expect(msg.text).toContain('etcd status — lab');
    expect(msg.text).toContain('quorum lost');
    for (const cell of [...memberTable.columns, ...memberTable.rows.flat()]) expect(msg.text).toContain(cell);
  });

  it('keeps a huge report within every Block Kit limit', () => {
    const long = (n: number, s = 'x') => s.repeat(n);
    const bigTable = (i: number) => ({
      title: `table ${i} ${long(300)}`,
      columns: Array.from({ length: 25 }, (_, c) => `column-${c}-${long(60)}`),
      rows: Array.from({ length: 150 }, (_, r) => Array.from({ length: 25 }, (_, c) => `r${r}c${c}${long(30, '&')}`)),
    });
    const report: Report = {
      title: long(500, 'T'),
      verdict: { level: 'critical', text: long(10_000, '<') },
      fields: Array.from({ length: 35 }, (_, i) => ({ label: `label ${i} ${long(300)}`, value: long(5000, '>') })),
      tables: Array.from({ length: 60 }, (_, i) => bigTable(i)),
      notes: Array.from({ length: 300 }, (_, i) => `note ${i} ${long(1000)}`),
      next: Array.from({ length: 100 }, (_, i) => `/etcd step-${i} ${long(500, '`')}`),
      context: Array.from({ length: 30 }, (_, i) => `context ${i} ${long(800)}`),
    };
    const msg = renderReport(report);
    expectWithinLimits(msg);
    expect((msg.blocks[0] as AnyBlock).text!.text.endsWith('…')).toBe(true);
    expect(texts(msg.blocks).join('\n')).toMatch(/more tables? not shown/);
  });

  it('cuts a long table by rows and says how many were left out', () => {
    const rows = Array.from({ length: 500 }, (_, i) => [`member-${i}`, `${i}`]);
    const msg = renderReport({ title: 'many', tables: [{ columns: ['name', 'n'], rows }] });
    expectWithinLimits(msg);
    const table = (msg.blocks[1] as AnyBlock).text!.text;
    const shown = table.split('\n').filter((l) => l.startsWith('member-')).length;
    expect(shown).toBeGreaterThan(10);
    expect(shown).toBeLessThan(500);
    expect(table).toContain(`_…${500 - shown} more rows not shown (500 in all)_`);
    // The fallback text still has all of them.
    expect(msg.text).toContain('member-499');
  });

  it('escapes &, < and > in mrkdwn and the fallback, without cutting an entity in half', () => {
    const msg = renderReport({
      title: 'a <b> & c',
      verdict: { level: 'info', text: '<!channel> & <@U123>' },
      fields: [{ label: 'x<y', value: 'a&b' }],
      tables: [{ columns: ['k'], rows: [['<script>&amp;']] }],
      notes: ['x'.repeat(10) + '&'.repeat(5000)],
      next: ['/etcd status <lab>'],
    });
    expectWithinLimits(msg);
    const blocks = msg.blocks as AnyBlock[];
    expect(blocks[0].text!.text).toBe('a <b> & c'); // plain_text is shown literally
    const mrkdwn = texts(msg.blocks.slice(1)).join('\n');
    expect(mrkdwn).not.toMatch(/[<>]/);
    expect(mrkdwn).not.toMatch(/&(?!amp;|lt;|gt;)/);
    expect(mrkdwn).toContain('&lt;!channel&gt; &amp; &lt;@U123&gt;');
    expect(mrkdwn).toContain('&lt;script&gt;&amp;amp;');
    expect(mrkdwn).toContain('`/etcd status &lt;lab&gt;`');
    expect(msg.text).not.toMatch(/[<>]/);
    expect(msg.text).toContain('a &lt;b&gt; &amp; c');
  });

  it('keeps backticks in cells from closing the code block', () => {
    const msg = renderReport({ title: 't', tables: [{ columns: ['c'], rows: [['```oops```']] }] });
    const table = (msg.blocks[1] as AnyBlock).text!.text;
    expect(table.match(/```/g)).toHaveLength(2);
  });

  it('never throws on odd input', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const odd: unknown[] = [
      null,
      undefined,
      42,
      'text',
      {},
      { title: '' },
      { title: 7, verdict: { level: 'bogus', text: null } },
      { title: 't', fields: [null, { label: null, value: { a: 1 } }, { label: '', value: '' }] },
      { title: 't', tables: [null, { columns: null, rows: null }, { columns: [], rows: [] }] },
      { title: 't', tables: [{ columns: ['a'], rows: [null, 'x', [1, true, cyclic, 10n], []] }] },
      { title: 't', tables: [{ columns: ['a', 'b'], rows: [['only-one'], ['1', '2', '3', '4']] }] },
      { title: 't', notes: 'not a list', next: [null, ''], context: [{}, '', null] },
      { title: 'line\nbreaks\tand\rtabs', verdict: { level: 'ok', text: '' } },
    ];
    for (const input of odd) {
      const msg = renderReport(input as Report);
      expectWithinLimits(msg);
      expect(msg.text).not.toContain('could not be formatted'); // rendered, not the last-resort path
    }
  });

  it('handles a table with many thousand rows without overflowing the stack', () => {
    const rows = Array.from({ length: 200_000 }, (_, i) => [`${i}`]);
    const msg = renderReport({ title: 'huge', tables: [{ columns: ['n'], rows }] });
    expectWithinLimits(msg);
    expect((msg.blocks[1] as AnyBlock).text!.text).toMatch(/more rows not shown \(200000 in all\)/);
  });
});
