// echo: answers every request, whatever its method, with 200 and the request
// body echoed back (Content-Length or chunked uploads alike). It is a
// streaming handler: on /stream it sends the body back as it arrives, piece by
// piece, chunked, so an upload of any size (up to --max-body) passes through
// in bounded memory; elsewhere it reads the whole body, then answers with a
// Content-Length.
//   build/examples/echo --port 8080
//   curl -d 'ping' http://127.0.0.1:8080/
//   curl -T some.iso http://127.0.0.1:8080/stream --max-body 8000000000 -o copy.iso
#include <cluster/cluster.hpp>

int main(int argc, char** argv) {
  auto echo = [](cluster::request& req, cluster::response_stream& out) -> asio::awaitable<void> {
    if (req.path() == "/stream") {
      co_await out.start(cluster::response::with(200, "", "application/octet-stream"));
      for (auto piece = co_await req.read_some(); !piece.empty(); piece = co_await req.read_some())
        co_await out.write(piece);  // completes once the client took it: a slow reader slows the upload
      co_return;
    }
    co_await req.read_body();
    // take_body() moves the upload into the response: no copy of its bytes.
    co_await out.send(cluster::response::with(200, req.take_body(), "application/octet-stream"));
  };
  return cluster::run(echo, argc, argv);
}
