import { execFileSync } from 'node:child_process';
import { isRemoteCommand, RemoteCommand, sh, shq } from '../src/exec/shell';

/** Runs the command text in a real local shell, as sshd would on the node. */
function run(cmd: RemoteCommand): string {
  return execFileSync('sh', ['-c', cmd.text], { encoding: 'utf8' });
}

const EVIL = [
  "it's",
  "'; touch /tmp/medic-pwned; echo '",
  '$(touch /tmp/medic-pwned)',
  '`touch /tmp/medic-pwned`',
  '"; touch /tmp/medic-pwned; "',
  '$HOME ${PATH} $((1+1)) $0',
  'a && b || c; d | e > f < g & h',
  '*?[a-z]{x,y}~ !!',
  '\\\\\\ \\\' \\"',
  '-n',
  '--',
  '',
  '  leading and trailing  ',
  'tab\there',
  'ümlaut ☃',
];

describe('shq', () => {
  it('quotes plainly', () => {
    expect(shq('abc')).toBe("'abc'");
    expect(shq('')).toBe("''");
    expect(shq("it's")).toBe(`'it'\\''s'`);
  });
});

describe('sh', () => {
  it.each(EVIL)('passes %j through a real shell verbatim', (s) => {
    // printf, not echo: echo would interpret "-n" and backslashes itself.
    expect(run(sh`printf '%s' ${s}`)).toBe(s);
  });

  it('keeps each interpolation one word', () => {
    const out = run(sh`printf '<%s>' ${'a b'} ${'c'}`);
    expect(out).toBe('<a b><c>');
  });

  it('never runs injected commands', () => {
    const marker = `/tmp/medic-pwned-${process.pid}`;
    run(sh`printf '%s' ${`; touch ${marker}`} ${`$(touch ${marker})`} ${`\`touch ${marker}\``}`);
    expect(() => execFileSync('test', ['-e', marker])).toThrow();
  });

  it('quotes array elements as separate words and numbers', () => {
    expect(run(sh`printf '<%s>' ${['x y', "z'"]} ${42}`)).toBe("<x y><z'><42>");
  });

  it('nests a command made by sh without re-quoting it', () => {
    const inner = sh`printf '%s' ${'a;b'}`;
    expect(run(sh`${inner} && printf '!'`)).toBe('a;b!');
  });

  it.each(['a\nb', 'a\rb', 'a\0b'])('rejects %j', (s) => {
    expect(() => sh`cat ${s}`).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
  });

  it('rejects non-finite numbers', () => {
    expect(() => sh`sleep ${NaN}`).toThrow(expect.objectContaining({ code: 'BAD_INPUT' }));
  });

  it('brands only what it built', () => {
    expect(isRemoteCommand(sh`true`)).toBe(true);
    expect(isRemoteCommand({ text: 'rm -rf /' })).toBe(false);
    // Called as a function with a hand-made "template", it refuses.
    const fake = ['rm -rf /'] as unknown as TemplateStringsArray;
    expect(() => sh(fake)).toThrow(expect.objectContaining({ code: 'INTERNAL' }));
  });
});
