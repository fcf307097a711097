// node_messaging: the Node.js side of the messaging benchmark run by
// benchmarks/run.py (issue 6), with node:cluster's IPC channel
// (worker process.send / primary worker.send).
//
//   node benchmarks/node_messaging.js --seconds 3
//
// A primary forks one worker, then measures, for about --seconds each:
// 1. round trips: the worker sends a small message to the primary and waits
//    for the primary's answer before sending the next; the worker times them;
// 2. one-way messages: the worker sends small messages to the primary as fast
//    as the channel takes them (it waits for the send callback of every
//    1000th message, so the queue in the worker stays bounded); the primary
//    times from the first message it receives to the last.
// The primary prints one JSON line on stdout:
//   {"peer":"node","round_trips":N,"round_trip_seconds":S,"round_trips_per_s":R,
//    "round_trip_us":U,"one_way_messages":M,"one_way_seconds":S2,"one_way_per_s":R2}
// The cluster side (issue 6) must print the same keys so the runner can
// compare them.
'use strict';
const cluster = require('node:cluster');

function parseSeconds(argv) {
  const i = argv.indexOf('--seconds');
  const s = i >= 0 ? Number(argv[i + 1]) : 3;
  if (!(s > 0 && s <= 60)) {
    console.error('--seconds must be in (0, 60]');
    process.exit(2);
  }
  return s;
}

const seconds = parseSeconds(process.argv);
const now = () => Number(process.hrtime.bigint()) / 1e9;

if (cluster.isPrimary) {
  const result = { peer: 'node' };
  const worker = cluster.fork();
  let oneWayCount = 0;
  let oneWayFirst = 0;
  let oneWayLast = 0;
  // Bounded: the whole benchmark must finish well within this.
  const watchdog = setTimeout(() => {
    console.error('node_messaging: timed out');
    worker.process.kill('SIGKILL');
    process.exit(1);
  }, (seconds * 2 + 30) * 1000);
  worker.on('message', (msg) => {
    switch (msg.t) {
      case 'rt':
        worker.send(msg);
        break;
      case 'ow':
        if (oneWayCount === 0) oneWayFirst = now();
        ++oneWayCount;
        oneWayLast = now();
        break;
      case 'rt-done':
        result.round_trips = msg.n;
        result.round_trip_seconds = msg.s;
        result.round_trips_per_s = msg.n / msg.s;
        result.round_trip_us = (msg.s / msg.n) * 1e6;
        worker.send({ t: 'start-ow' });
        break;
      case 'ow-done': {
        // Everything the worker sent was received before 'ow-done' (one channel, in order).
        const s = oneWayLast - oneWayFirst;
        result.one_way_messages = oneWayCount;
        result.one_way_sent = msg.n;
        result.one_way_seconds = s;
        result.one_way_per_s = (oneWayCount - 1) / s;
        process.stdout.write(JSON.stringify(result) + '\n');
        clearTimeout(watchdog);
        worker.kill();
        break;
      }
    }
  });
  worker.on('exit', () => process.exit(0));
} else {
  const roundTrips = () => {
    let n = 0;
    const start = now();
    const deadline = start + seconds;
    const onAnswer = (msg) => {
      if (msg.t !== 'rt') return;
      ++n;
      // Check the clock every 64 round trips to keep it out of the loop cost.
      if ((n & 63) === 0 && now() >= deadline) {
        process.removeListener('message', onAnswer);
        process.send({ t: 'rt-done', n, s: now() - start });
        return;
      }
      process.send({ t: 'rt', i: n });
    };
    process.on('message', onAnswer);
    process.send({ t: 'rt', i: 0 });
  };
  const oneWay = () => {
    let n = 0;
    const deadline = now() + seconds;
    const burst = () => {
      for (let k = 0; k < 999; ++k) process.send({ t: 'ow', i: n++ });
      process.send({ t: 'ow', i: n++ }, () => {
        if (now() < deadline) burst();
        else process.send({ t: 'ow-done', n });
      });
    };
    burst();
  };
  process.on('message', (msg) => {
    if (msg.t === 'start-ow') oneWay();
  });
  roundTrips();
}
