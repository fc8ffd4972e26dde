import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InputError } from '../../src/errors';
import { ItemResult, ResultsWriter, readResults } from '../../src/eval/results';

const tmp = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vl-results-')), 'out.jsonl');
const line = (id: string, extra: Partial<ItemResult> = {}): ItemResult => ({ id, answer: `answer ${id}`, tokens: 2, ...extra });
const text = (...rs: ItemResult[]) => rs.map((r) => `${JSON.stringify(r)}\n`).join('');

describe('ResultsWriter', () => {
  test('appends durable lines and reads them back as the finished set', () => {
    const file = tmp();
    const w = ResultsWriter.open(file);
    expect(w.results.size).toBe(0);
    w.append([line('a'), line('b')]);
    w.append([line('c', { error: { type: 'MediaError', message: 'x.mp4: file not found' }, answer: null })]);
    expect(() => w.append([line('a')])).toThrow(/already has a result line/); // never twice
    w.close();
    expect(fs.readFileSync(file, 'utf8')).toBe(text(line('a'), line('b'), line('c', { error: { type: 'MediaError', message: 'x.mp4: file not found' }, answer: null })));
    const again = ResultsWriter.open(file);
    expect([...again.results.keys()]).toEqual(['a', 'b', 'c']);
    again.close();
  });

  test.each([
    ['a line without its newline', '{"id":"c","answer":"x","tokens":1}'],
    ['half a line', '{"id":"c","ans'],
    ['zeros left by a crash', '\0\0\0\0\0\0'],
    ['a bad line with a newline', '{"id":"c"\n'],
  ])('a torn last line (%s) is cut off and its item runs again', (_label, tail) => {
    const file = tmp();
    const good = text(line('a'), line('b'));
    fs.writeFileSync(file, good + tail);
    expect(readResults(file).droppedBytes).toBe(Buffer.byteLength(tail));
    const w = ResultsWriter.open(file);
    expect([...w.results.keys()]).toEqual(['a', 'b']);
    expect(w.opened.droppedBytes).toBe(Buffer.byteLength(tail));
    w.append([line('c')]);
    w.close();
    expect(fs.readFileSync(file, 'utf8')).toBe(good + text(line('c')));
  });

  test('a bad line in the middle is an error naming the line, and the file is left alone', () => {
    const file = tmp();
    const content = `${text(line('a'))}not json\n${text(line('b'))}`;
    fs.writeFileSync(file, content);
    expect(() => ResultsWriter.open(file)).toThrow(InputError);
    expect(() => ResultsWriter.open(file)).toThrow(/out\.jsonl line 2: not a result line/);
    expect(fs.readFileSync(file, 'utf8')).toBe(content);
    expect(fs.existsSync(`${file}.lock`)).toBe(false);
  });

  test('repeated ids count once (the first line); retryErrors removes the error lines atomically', () => {
    const file = tmp();
    const bad = line('b', { answer: null, error: { type: 'InputError', message: 'prompt: too long' } });
    fs.writeFileSync(file, text(line('a'), bad, line('a', { answer: 'other' })));
    const r = readResults(file);
    expect(r.results.get('a')!.answer).toBe('answer a');
    expect(r.duplicates).toEqual(['a']);
    const w = ResultsWriter.open(file, { dropErrors: true });
    expect([...w.results.keys()]).toEqual(['a']);
    w.close();
    expect(fs.readFileSync(file, 'utf8')).toBe(text(line('a')));
  });

  test('a second writer is refused while the first lives; a dead writer’s lock is taken over', async () => {
    const file = tmp();
    const w = ResultsWriter.open(file);
    expect(() => ResultsWriter.open(file)).toThrow(/already has it open/);
    w.close();
    // a lock held by another live process
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      fs.writeFileSync(`${file}.lock`, JSON.stringify({ pid: child.pid, host: os.hostname() }));
      expect(() => ResultsWriter.open(file)).toThrow(new RegExp(`another run \\(pid ${child.pid}\\) is writing it`));
    } finally {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    // the same lock once that process is gone: stale
    const w2 = ResultsWriter.open(file);
    w2.append([line('z')]);
    w2.close();
    expect(fs.existsSync(`${file}.lock`)).toBe(false);
  });
});
