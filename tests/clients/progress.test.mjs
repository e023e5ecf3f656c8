// Real, unchanged clients against sluice with progress on (X-Sluice-Progress: 1): the npm
// `ollama` and `openai` packages, and a Node fetch (undici) whose headersTimeout is 2 s waiting
// 5 s in the queue. Usage: node progress.test.mjs SLUICE_PORT (sluice: max_concurrency 1,
// progress_interval 1s, in front of sluice-sim). Exits 0 when every check passed.
import assert from 'node:assert/strict';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { Agent, fetch as undiciFetch } from 'undici';

const port = process.argv[2];
if (!port) throw new Error('usage: node progress.test.mjs SLUICE_PORT');
const host = `http://127.0.0.1:${port}`;
const progress = { 'X-Sluice-Progress': '1' };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Holds sluice's only slot with a long generation until released (the stream is aborted).
async function block() {
  const client = new Ollama({ host, headers: { 'X-User-Id': 'blocker' } });
  const stream = await client.generate({
    model: 'mistral', prompt: 'block', stream: true, options: { num_predict: 100000 },
  });
  const draining = (async () => {
    try { for await (const _ of stream) { /* discard */ } } catch { /* aborted */ }
  })();
  return { release: async () => { stream.abort(); await draining; } };
}

// Waits until sluice has `n` requests parked (GET /sluice/requests/{id} of `id`).
async function parked(id) {
  for (let i = 0; i < 200; ++i) {
    const r = await fetch(`${host}/sluice/requests/${id}`);
    if (r.status === 200 && (await r.json()).state === 'parked') return;
    await sleep(20);
  }
  throw new Error(`request ${id} never parked`);
}

const results = [];
async function check(name, body) {
  const start = Date.now();
  try {
    await body();
    results.push(`ok   ${name} (${Date.now() - start} ms)`);
  } catch (error) {
    results.push(`FAIL ${name}: ${error.stack || error}`);
  }
}

await check('ollama generate, streamed, while parked', async () => {
  const blocker = await block();
  const client = new Ollama({ host, headers: { ...progress, 'X-Request-Id': 'ollama-gen' } });
  const answer = client.generate({
    model: 'mistral', prompt: 'hello', stream: true, options: { num_predict: 8 },
  });
  await parked('ollama-gen');
  await sleep(1500);  // a keep-alive or two
  await blocker.release();
  let text = '';
  let last = null;
  let keepalives = 0;
  for await (const part of await answer) {
    if (part.sluice) ++keepalives;
    text += part.response;
    last = part;
  }
  assert.ok(keepalives >= 1, 'saw the queue position');
  assert.equal(last.done, true);
  assert.equal(last.eval_count, 8);
  assert.ok(text.length > 0);
});

await check('ollama chat, not streamed, while parked', async () => {
  const blocker = await block();
  const client = new Ollama({ host, headers: { ...progress, 'X-Request-Id': 'ollama-chat' } });
  const answer = client.chat({
    model: 'mistral', messages: [{ role: 'user', content: 'hi' }], stream: false,
    options: { num_predict: 6 },
  });
  await parked('ollama-chat');
  await sleep(1500);
  await blocker.release();
  const response = await answer;
  assert.equal(response.done, true);
  assert.equal(response.message.role, 'assistant');
  assert.ok(response.message.content.length > 0);
  assert.equal(response.eval_count, 6);
});

await check('openai chat.completions, streamed, while parked', async () => {
  const blocker = await block();
  const client = new OpenAI({
    baseURL: `${host}/v1`, apiKey: 'unused',
    defaultHeaders: { ...progress, 'X-Request-Id': 'openai-stream' }, maxRetries: 0,
  });
  const answer = client.chat.completions.create({
    model: 'mistral', messages: [{ role: 'user', content: 'hi' }], stream: true, max_tokens: 7,
  });
  await parked('openai-stream');
  await sleep(1500);
  await blocker.release();
  let text = '';
  let finish = null;
  for await (const chunk of await answer) {
    text += chunk.choices[0]?.delta?.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.ok(text.length > 0);
  assert.equal(finish, 'length');
});

await check('openai chat.completions, not streamed, while parked', async () => {
  const blocker = await block();
  const client = new OpenAI({
    baseURL: `${host}/v1`, apiKey: 'unused',
    defaultHeaders: { ...progress, 'X-Request-Id': 'openai-whole' }, maxRetries: 0,
  });
  const answer = client.chat.completions.create({
    model: 'mistral', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5,
  });
  await parked('openai-whole');
  await sleep(1500);
  await blocker.release();
  const response = await answer;
  assert.ok(response.choices[0].message.content.length > 0);
  assert.equal(response.usage.completion_tokens, 5);
});

// headersTimeout 2 s, 5 s in the queue: fails without progress, succeeds with it.
async function waitFiveSeconds(headers) {
  const blocker = await block();
  const dispatcher = new Agent({ headersTimeout: 2000 });
  const release = sleep(5000).then(() => blocker.release());
  try {
    const response = await undiciFetch(`${host}/api/generate`, {
      method: 'POST', dispatcher, headers: { 'Content-Type': 'application/json', ...headers },
      body: JSON.stringify({ model: 'mistral', prompt: 'x', stream: false,
                             options: { num_predict: 4 } }),
    });
    return await response.json();
  } finally {
    await release;
    await dispatcher.close();
  }
}

await check('headersTimeout 2 s, 5 s parked, no progress: the client gives up', async () => {
  await assert.rejects(waitFiveSeconds({}), (error) =>
    (error.cause?.code ?? error.code) === 'UND_ERR_HEADERS_TIMEOUT');
});

await check('headersTimeout 2 s, 5 s parked, with progress: the answer arrives', async () => {
  const start = Date.now();
  const answer = await waitFiveSeconds(progress);
  assert.ok(Date.now() - start >= 4500, 'it did wait in the queue');
  assert.equal(answer.done, true);
  assert.equal(answer.eval_count, 4);
});

console.log(results.join('\n'));
process.exit(results.every((r) => r.startsWith('ok')) ? 0 : 1);
