// One Node process, two servers answering the same small GET (a 13-byte
// body): HTTP/1.1 (`http`, keep-alive) on PORT and cleartext HTTP/2
// (`http2`, h2c with prior knowledge) on PORT2. contrib/bench/grpc-compare
// puts Tollgate in front of each to compare its HTTP/2 upstream path with
// the HTTP/1.1 keep-alive one against the same server process.
'use strict';
const http = require('http');
const http2 = require('http2');
const body = Buffer.from('hello, world\n');
const answer = (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
};
http.createServer({ keepAliveTimeout: 60000 }, answer).listen(+process.env.PORT, '127.0.0.1');
http2.createServer({ settings: { maxConcurrentStreams: 1000 } }, answer)
    .listen(+process.env.PORT2, '127.0.0.1');
