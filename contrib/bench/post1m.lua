-- post1m.lua: wrk script for the "post1m" scenario. Every request is a POST of a 1 MiB
-- body (wrk.format adds the Content-Length). The body is built once per wrk thread.
-- Standalone: wrk -t2 -c50 -d5s -s contrib/bench/post1m.lua http://127.0.0.1:PORT/upload
wrk.method = "POST"
wrk.body = string.rep("0123456789abcdef", 65536) -- 16 B x 65536 = 1 MiB
wrk.headers["Content-Type"] = "application/octet-stream"
