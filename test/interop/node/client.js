// A Node.js client of concur built from the contracts alone: @grpc/proto-loader reads the .proto
// files under api/ at run time and @grpc/grpc-js makes the calls; no generated code, nothing Go.
// It calls each service, checks every answer, and exits 1 at the first one that is not what
// concur promises, saying what it got and what it wanted. node_test.go runs it against a real
// concurd; by hand, against a concurd of its own (the checks expect no other client):
//
//   node client.js --addr localhost:50051 [--page STATUS:SIZE:URL]...
//
// Each --page is a URL that sitesize may fetch and the status and size it must report; without
// one, Measure is not called. --api is the folder of the .proto files (this repository's api/).
'use strict';

const path = require('node:path');
const { parseArgs, isDeepStrictEqual } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const usage = 'usage: node client.js --addr HOST:PORT [--api DIR] [--page STATUS:SIZE:URL]...';
let flags;
let pages;
try {
  flags = parseArgs({
    options: {
      addr: { type: 'string', default: 'localhost:50051' },
      api: { type: 'string', default: path.join(__dirname, '..', '..', '..', 'api') },
      page: { type: 'string', multiple: true, default: [] },
    },
  }).values;
  pages = flags.page.map((p) => {
    const [, status, size, url] = /^(\d+):(\d+):(.+)$/.exec(p) ?? [];
    if (!url) throw new Error(`--page ${p}: want STATUS:SIZE:URL`);
    return { url, status: Number(status), size: BigInt(size) };
  });
} catch (err) {
  console.error(`${err.message}\n${usage}`);
  process.exit(2);
}

// The contracts, as any other language would load them. int64 and uint64 come as strings
// (a JavaScript number cannot hold them all) and are compared as BigInt; enums come by name.
const definition = protoLoader.loadSync(
  [
    'concur/counter/v1/counter.proto',
    'concur/printer/v1/printer.proto',
    'concur/sitesize/v1/sitesize.proto',
    'concur/caser/v1/caser.proto',
  ],
  { includeDirs: [flags.api], longs: String, enums: String, defaults: true, oneofs: true },
);
const concur = grpc.loadPackageDefinition(definition).concur;
const credentials = grpc.credentials.createInsecure();

// google.rpc.Status and BadRequest, the fields of googleapis' status.proto and
// error_details.proto that this client reads: concur's INVALID_ARGUMENT carries them in the
// grpc-status-details-bin trailer.
const rpc = protobuf.parse(`
  syntax = "proto3";
  package google.rpc;
  message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
  message BadRequest {
    message FieldViolation { string field = 1; string description = 2; }
    repeated FieldViolation field_violations = 1;
  }
`, protobuf.Root.fromJSON(protobuf.common.get('google/protobuf/any.proto')), { keepCase: true }).root;

class Mismatch extends Error {}

function show(v) {
  return typeof v === 'bigint' ? `${v}` : JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? `${x}` : x));
}

function expect(what, got, want) {
  if (!isDeepStrictEqual(got, want)) {
    throw new Mismatch(`${what}: got ${show(got)}, want ${show(want)}`);
  }
}

function deadline() {
  return Date.now() + 30_000;
}

// unary calls a unary method and resolves with its response.
function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: deadline() }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

// collect resolves with every message of a server stream once it ends without error.
function collect(stream) {
  return new Promise((resolve, reject) => {
    const messages = [];
    stream.on('data', (m) => messages.push(m));
    stream.on('error', reject);
    stream.on('end', () => resolve(messages));
  });
}

async function counter() {
  const client = new concur.counter.v1.CounterService(flags.addr, credentials);
  const name = 'node';
  const before = BigInt((await unary(client, 'Get', { name })).value);

  const five = await unary(client, 'Increment', { name, delta: 5 });
  expect('Increment {delta: 5}', [five.name, BigInt(five.value)], [name, before + 5n]);
  const one = await unary(client, 'Increment', { name }); // no delta: adds 1
  expect('Increment without delta: value', BigInt(one.value), before + 6n);
  expect('Increment: sequence after the one before', BigInt(one.sequence), BigInt(five.sequence) + 1n);
  expect('Get after the increments', BigInt((await unary(client, 'Get', { name })).value), before + 6n);

  const joined = await unary(client, 'Join', {});
  expect('counter Join: printed', joined.printed, true);
  expect('counter Join: sequence covers the last Increment', BigInt(joined.sequence) >= BigInt(one.sequence), true);

  // A delta of 0 is refused, the field named in a google.rpc.BadRequest.
  const err = await unary(client, 'Increment', { name, delta: 0 }).then(
    () => { throw new Mismatch('Increment {delta: 0}: answered, want INVALID_ARGUMENT'); },
    (e) => e,
  );
  expect('Increment {delta: 0}: code', grpc.status[err.code], 'INVALID_ARGUMENT');
  expect('Increment {delta: 0}: fields at fault', badRequestFields(err), ['delta']);
  client.close();
  console.log(`counter: ${name} went from ${before} to ${before + 6n} (sequences ${five.sequence}, ${one.sequence}), Join printed up to ${joined.sequence}, delta 0 refused`);
  return [`The count of ${name} is ${before + 5n}`, `The count of ${name} is ${before + 6n}`];
}

function badRequestFields(err) {
  const [bin] = err.metadata.get('grpc-status-details-bin');
  if (!bin) throw new Mismatch(`${err.message}: no grpc-status-details-bin trailer`);
  const status = rpc.lookupType('google.rpc.Status').decode(bin);
  const detail = status.details.find((d) => d.type_url === 'type.googleapis.com/google.rpc.BadRequest');
  if (!detail) throw new Mismatch(`${err.message}: no google.rpc.BadRequest among the details`);
  return rpc.lookupType('google.rpc.BadRequest').decode(detail.value).field_violations.map((v) => v.field);
}

async function printer(counterLines) {
  const client = new concur.printer.v1.PrinterService(flags.addr, credentials);
  const source = `node-${process.pid}-${Date.now()}`;
  const lines = ['Hello from Node.js', `through the .proto files alone, as ${source}`];
  const job = { lines, source, sourceSequence: 1 };

  const printed = await unary(client, 'Print', job);
  expect('Print: duplicate', printed.duplicate, false);
  const resent = await unary(client, 'Print', job);
  expect('Print of the same source_sequence again: duplicate', resent.duplicate, true);
  const joined = await unary(client, 'Join', {});
  expect('printer Join: sequence covers the Print', BigInt(joined.sequence) >= BigInt(printed.sequence), true);

  // What was written, read back: the job once, at its sequence, its lines together; and the
  // counter's updates, which it forwarded to the printer in order.
  const jobs = await collect(client.Tail({ fromSequence: 0, historyOnly: true }, { deadline: deadline() }));
  const ours = jobs.filter((j) => isDeepStrictEqual(j.lines, lines));
  expect('Tail: sequences of the jobs with our lines', ours.map((j) => j.sequence), [printed.sequence]);
  const all = jobs.flatMap((j) => j.lines);
  expect('Tail: the counter\'s updates, in order', all.filter((l) => counterLines.includes(l)).slice(-2), counterLines);
  client.close();
  console.log(`printer: printed as ${printed.sequence}, resent as a duplicate, Join at ${joined.sequence}, read back with the counter's lines`);
}

async function sitesize() {
  if (pages.length === 0) {
    console.log('sitesize: no --page given, Measure not called');
    return;
  }
  const client = new concur.sitesize.v1.SiteSizeService(flags.addr, credentials);
  const results = await collect(client.Measure({ urls: pages.map((p) => p.url) }, { deadline: deadline() }));
  expect('Measure: results, one per URL, by index', results.map((r) => r.index).sort((a, b) => a - b), pages.map((_, i) => i));
  for (const r of results) {
    const want = pages[r.index];
    expect(`Measure result ${r.index}`,
      { url: r.url, status: r.status, size: BigInt(r.size), truncated: r.truncated, error: r.error },
      { url: want.url, status: want.status, size: want.size, truncated: false, error: null });
  }
  client.close();
  console.log(`sitesize: ${results.length} of ${pages.length} results as expected: URL, status and size`);
}

async function caser() {
  const client = new concur.caser.v1.CaserService(flags.addr, credentials);
  const session = client.Session({ deadline: deadline() });
  const replies = collect(session);
  for (const line of ['hello', 'straße', 'title', 'hello world', 'quit']) session.write({ line });
  session.end();
  // An announcement may come at any time; the rest answer the lines in order.
  const got = (await replies).filter((r) => r.reply !== 'announcement').map((r) => ({ [r.reply]: r[r.reply] }));
  expect('Session replies', got, [
    { welcome: { mode: 'MODE_UPPER', text: '<welcome: starting in upper case mode>' } },
    { cased: { line: 'hello', text: 'HELLO', mode: 'MODE_UPPER' } },
    { cased: { line: 'straße', text: 'STRASSE', mode: 'MODE_UPPER' } },
    { modeChanged: { mode: 'MODE_TITLE', text: '<switching to title case mode>' } },
    { cased: { line: 'hello world', text: 'Hello World', mode: 'MODE_TITLE' } },
    { goodbye: { reason: 'GOODBYE_REASON_QUIT', text: '<goodbye: you said quit>' } },
  ]);
  client.close();
  console.log('caser: a session cased its lines, switched to title case and said goodbye');
}

async function main() {
  let step;
  try {
    step = 'counter';
    const counterLines = await counter();
    step = 'printer';
    await printer(counterLines);
    step = 'sitesize';
    await sitesize();
    step = 'caser';
    await caser();
  } catch (err) {
    if (err instanceof Mismatch) {
      console.error(`MISMATCH: ${err.message}`);
    } else if (err.code !== undefined && err.details !== undefined) {
      console.error(`${step}: gRPC error ${grpc.status[err.code]}: ${err.details}`);
    } else {
      console.error(`${step}:`, err);
    }
    process.exit(1);
  }
  console.log(`all checks passed against ${flags.addr}`);
}

main();
