// echo: answers every request, whatever its method, with 200 and the request
// body echoed back (Content-Length or chunked uploads alike).
//   build/examples/echo --port 8080
//   curl -d 'ping' http://127.0.0.1:8080/
#include <cluster/cluster.hpp>

int main(int argc, char** argv) {
  auto echo = [](cluster::request& req) -> asio::awaitable<cluster::response> {
    cluster::response res;
    res.set("Content-Type", "application/octet-stream");
    res.body = req.body();
    co_return res;
  };
  return cluster::run(echo, argc, argv);
}
