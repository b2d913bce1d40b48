// express.static (serve-static) over the directory in $ROOT, for
// t/270-static.t: the same tree and requests go to Tollgate and here, and
// the answers are compared. fallthrough: false, so serve-static answers
// errors itself (405 for methods other than GET/HEAD, 404, 403) instead of
// passing them to a next handler that does not exist.
const http = require('http');
const serveStatic = require('serve-static');
const serve = serveStatic(process.env.ROOT, { fallthrough: false });
http.createServer((req, res) => {
    serve(req, res, (err) => {
        res.statusCode = (err && err.status) || 404;
        if (res.statusCode === 405) res.setHeader('Allow', 'GET, HEAD');
        res.end(String(res.statusCode));
    });
}).listen(process.env.PORT, '127.0.0.1');
