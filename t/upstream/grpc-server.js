// gRPC test upstream (@grpc/grpc-js), h2c, or TLS when CERT and KEY are set.
// Service tgtest.Test (grpc-test.proto):
//   Unary(Msg)          echoes data; text "fail" -> status 9 FAILED_PRECONDITION
//                       with message "asked to fail" and trailer x-why: asked;
//                       text "slow" -> answers after n ms; always sends the
//                       trailer x-len: data length, and metadata x-server: NAME
//   ServerStream(Msg)   n messages of data, each with text = its index; text
//                       "paced": 20 ms apart
//   ClientStream(stream) {n: messages received, data: their bytes joined}
//   Bidi(stream)        echoes each message as it comes
// GET-free: the log of cancelled calls is a unary call with text "cancels"
// (returns them joined in text); text "sick" / "well" switches what the
// health service (grpc.health.v1.Health/Check, grpc-health.proto) answers:
// SERVING for "" and "tgtest.Test" while well, NOT_SERVING while sick,
// NOT_FOUND (5) for another service. Checks are counted: text "checks".
'use strict';
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');
const fs = require('fs');
const path = require('path');

const def = loader.loadSync(path.join(__dirname, 'grpc-test.proto'));
const proto = grpc.loadPackageDefinition(def).tgtest;
const NAME = process.env.NAME || 'grpc';
const cancels = [];
const healthDef = loader.loadSync(path.join(__dirname, 'grpc-health.proto'), { enums: String });
const health = grpc.loadPackageDefinition(healthDef).grpc.health.v1;
let sick = false, checks = 0;

function unary(call, cb) {
    const m = call.request;
    call.on('cancelled', () => cancels.push('unary:' + m.text));
    const md = new grpc.Metadata();
    md.set('x-server', NAME);
    call.sendMetadata(md);
    if (m.text === 'cancels') return cb(null, { text: cancels.join(',') });
    if (m.text === 'sick' || m.text === 'well') { sick = m.text === 'sick'; return cb(null, {}); }
    if (m.text === 'checks') return cb(null, { n: checks });
    if (m.text === 'fail') {
        const t = new grpc.Metadata();
        t.set('x-why', 'asked');
        return cb({ code: 9, details: 'asked to fail', metadata: t });
    }
    m.data = m.data || Buffer.alloc(0); // proto-loader leaves an absent field undefined
    const trailer = new grpc.Metadata();
    trailer.set('x-len', String(m.data.length));
    const answer = () => cb(null, { data: m.data, n: m.data.length }, trailer);
    if (m.text === 'slow') return setTimeout(answer, m.n);
    answer();
}

function serverStream(call) {
    const m = call.request;
    let i = 0, cancelled = false;
    call.on('cancelled', () => { cancelled = true; cancels.push('stream:' + m.text); });
    const paced = m.text === 'paced';
    const next = () => {
        while (!cancelled && i < m.n) {
            const ok = call.write({ data: m.data, text: String(i++) });
            if (paced) return setTimeout(next, 20);
            if (!ok) return call.once('drain', next);
        }
        if (!cancelled) call.end();
    };
    next();
}

function clientStream(call, cb) {
    const parts = [];
    call.on('data', (m) => parts.push(m.data));
    call.on('end', () => cb(null, { n: parts.length, data: Buffer.concat(parts) }));
}

function bidi(call) {
    call.on('data', (m) => call.write(m));
    call.on('end', () => call.end());
}

const server = new grpc.Server({ 'grpc.max_receive_message_length': -1,
                                 'grpc.max_send_message_length': -1 });
server.addService(proto.Test.service, { Unary: unary, ServerStream: serverStream,
                                        ClientStream: clientStream, Bidi: bidi });
server.addService(health.Health.service, {
    Check(call, cb) {
        checks++;
        const svc = call.request.service;
        if (svc !== '' && svc !== 'tgtest.Test') return cb({ code: 5, details: 'unknown service' });
        cb(null, { status: sick ? 'NOT_SERVING' : 'SERVING' });
    },
});
const creds = process.env.CERT
    ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: fs.readFileSync(process.env.CERT),
                                                private_key: fs.readFileSync(process.env.KEY) }])
    : grpc.ServerCredentials.createInsecure();
server.bindAsync('127.0.0.1:' + process.env.PORT, creds, (err) => {
    if (err) { console.error(err); process.exit(1); }
});
