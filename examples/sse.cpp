// sse: Server-Sent Events a browser can open, from a streaming handler.
//   GET /         a page whose EventSource lists each event (id and data) as it arrives
//   GET /events   the stream: text/event-stream, ticks 1..10 half a second apart
//                 (`id: N`, `data: tick N`), then a heartbeat comment every 2 s
// Run it and open the page:
//   build/examples/sse --port 8080          then open http://127.0.0.1:8080/
//   curl -N http://127.0.0.1:8080/events
//   curl -N -H 'Last-Event-ID: 7' http://127.0.0.1:8080/events    (resumes at 8)
// A browser that loses the stream reconnects by itself after `retry` ms and
// sends the last id it saw in Last-Event-ID; the stream resumes after it (a
// malformed id counts as none). CORS: the stream is public and read without
// credentials, so any origin may open it (Access-Control-Allow-Origin: *); for
// a private stream, answer only the origins you trust, with Vary: Origin. The
// page takes ?stream=URL to open another server's stream across origins.
// Open streams are in-flight requests: a graceful stop (Ctrl-C) waits for them
// up to --shutdown-timeout.
#include <cluster/cluster.hpp>

#include <charconv>
#include <chrono>
#include <string>
#include <string_view>

namespace {

using namespace std::chrono_literals;

constexpr int last_tick = 10;           // the demo's event source: ticks 1..10, then silence
constexpr auto tick_interval = 500ms;
constexpr auto heartbeat_interval = 2s;  // short for the demo; 15-30 s in production, below proxies' idle timeouts
constexpr std::string_view retry = "retry: 2000\n\n";  // the browser's reconnection delay, in ms

constexpr std::string_view page = R"html(<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>cluster: Server-Sent Events</title>
<h1>Server-Sent Events</h1>
<p>Stream <code id="url"></code>: <span id="state">connecting</span></p>
<ol id="events"></ol>
<script>
  // ?stream=URL opens another server's stream, which works when it allows this origin (CORS).
  const url = new URLSearchParams(location.search).get('stream') || '/events';
  const state = document.getElementById('state'), list = document.getElementById('events');
  document.getElementById('url').textContent = url;
  const source = new EventSource(url);  // reconnects by itself, sending Last-Event-ID
  source.onopen = () => { state.textContent = 'open'; };
  source.onerror = () => { state.textContent = source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting'; };
  source.onmessage = (event) => {
    const item = document.createElement('li');
    item.dataset.id = event.lastEventId;
    item.textContent = `id ${event.lastEventId}: ${event.data}`;
    list.append(item);
  };
</script>
</html>
)html";

// The id a reconnecting client saw last, or 0 (start over) when it sent none
// or something that is not a decimal number.
int resume_after(std::string_view last_event_id) {
  int id = 0;
  const char* end = last_event_id.data() + last_event_id.size();
  auto [stop, ec] = std::from_chars(last_event_id.data(), end, id);
  return ec == std::errc{} && stop == end && id > 0 ? id : 0;
}

// GET /events: the stream (HEAD gets its header fields only).
asio::awaitable<void> events(cluster::request& req, cluster::response_stream& out) {
  cluster::response head = cluster::response::with(200, "", "text/event-stream");
  head.set("Cache-Control", "no-cache");  // every reader must see every event, live
  head.set("Access-Control-Allow-Origin", "*");
  co_await out.start(std::move(head));  // the client sees the stream open now
  if (req.method() == "HEAD") co_return;

  // Every write throws std::system_error once the client has gone away,
  // which ends this handler: that is why an idle stream still writes.
  co_await out.write(retry);
  asio::steady_timer timer(co_await asio::this_coro::executor);
  std::string event;
  for (int id = resume_after(req.header("Last-Event-ID")) + 1; id <= last_tick; ++id) {
    event = "id: " + std::to_string(id) + "\ndata: tick " + std::to_string(id) + "\n\n";
    co_await out.write(event);
    timer.expires_after(tick_interval);
    co_await timer.async_wait(asio::use_awaitable);
  }
  for (;;) {  // idle: a comment line keeps proxies from closing the stream
    timer.expires_after(heartbeat_interval);
    co_await timer.async_wait(asio::use_awaitable);
    co_await out.write(": heartbeat\n\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  // The router answers the rest: 404 for other paths, 405 with Allow for
  // other methods, OPTIONS with Allow (a CORS preflight, Fetch standard
  // "CORS protocol", gets its fields from the cors middleware).
  cluster::router r;
  r.use(cluster::cors({.methods = {"GET", "HEAD"}, .headers = {"Last-Event-ID", "Cache-Control"}, .max_age = 24h}));
  r.get("/", [](const cluster::request&) { return cluster::response::html(std::string(page)); });
  r.get("/events", events);
  return cluster::run(r, argc, argv);
}
