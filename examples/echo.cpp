// echo: answers every request, whatever its method, with 200 and the request
// body echoed back (Content-Length or chunked uploads alike). A router with a
// streaming route: on /stream the body goes back as it arrives, piece by
// piece, chunked, so an upload of any size (up to --max-body) passes through
// in bounded memory; elsewhere the whole body is read first, then answered
// with a Content-Length.
//   build/examples/echo --port 8080
//   curl -d 'ping' http://127.0.0.1:8080/
//   curl -T some.iso http://127.0.0.1:8080/stream --max-body 8000000000 -o copy.iso
#include <cluster/cluster.hpp>

int main(int argc, char** argv) {
  cluster::router r;
  // A streaming route: called before the body is read.
  r.any("/stream", [](cluster::request& req, cluster::response_stream& out) -> asio::awaitable<void> {
    co_await out.start(cluster::response::with(200, "", "application/octet-stream"));
    for (auto piece = co_await req.read_some(); !piece.empty(); piece = co_await req.read_some())
      co_await out.write(piece);  // completes once the client took it: a slow reader slows the upload
  });
  // Every other path: the router has read the whole body before calling it.
  // take_body() moves the upload into the response: no copy of its bytes.
  r.any("/*", [](cluster::request& req) -> asio::awaitable<cluster::response> {
    co_return cluster::response::with(200, req.take_body(), "application/octet-stream");
  });
  return cluster::run(r, argc, argv);
}
