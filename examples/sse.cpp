// sse: Server-Sent Events from a streaming handler. GET /events answers
// text/event-stream and sends five events, half a second apart, each one
// written (and seen by the client) as soon as it is ready; then the stream
// ends. Any other path gets 404.
//   build/examples/sse --port 8080
//   curl -N http://127.0.0.1:8080/events
// or, from a page served by the same origin:
//   new EventSource('/events').onmessage = (e) => console.log(e.lastEventId, e.data)
#include <cluster/cluster.hpp>

#include <chrono>
#include <string>

int main(int argc, char** argv) {
  auto events = [](cluster::request& req, cluster::response_stream& out) -> asio::awaitable<void> {
    if (req.path() != "/events") {
      co_await out.send(cluster::response::text("try GET /events\n", 404));
      co_return;
    }
    cluster::response head = cluster::response::with(200, "", "text/event-stream");
    head.set("Cache-Control", "no-cache");
    co_await out.start(std::move(head));  // the client sees the stream open now
    if (req.method() == "HEAD") co_return;

    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (int i = 1; i <= 5; ++i) {
      std::string event = "id: " + std::to_string(i) + "\ndata: tick " + std::to_string(i) + "\n\n";
      co_await out.write(event);  // throws if the client went away, which ends the handler
      if (i == 5) break;
      timer.expires_after(std::chrono::milliseconds(500));
      co_await timer.async_wait(asio::use_awaitable);
    }
  };
  return cluster::run(events, argc, argv);
}
