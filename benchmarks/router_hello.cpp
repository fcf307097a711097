// router_hello: examples/hello behind a router of 50 routes, for the routing
// section of benchmarks/run.py. 49 routes fill the table (literals,
// parameters, a wildcard, several methods); the measured one, registered
// last, is GET /users/:id, asked as /users/42: the request pays for decoding
// the path, walking the table and setting the parameter.
//   build-bench/benchmarks/router_hello --port 8080 --workers 1
//   curl http://127.0.0.1:8080/users/42      -> Hello World
#include <cluster/cluster.hpp>

#include <string>

int main(int argc, char** argv) {
  auto hello = [](const cluster::request& req) {
    return cluster::response::text(req.param("id").empty() ? "no id\n" : "Hello World\n");
  };
  cluster::router r;
  constexpr int fillers = 49;
  for (int i = 0; i < fillers; ++i) {
    const std::string resource = "/resource" + std::to_string(i);
    switch (i % 4) {
      case 0: r.get(resource + "/:id", hello); break;
      case 1: r.post(resource, hello); break;
      case 2: r.get(resource + "/:id/items/:item", hello); break;
      default: r.get(resource + "/files/*path", hello); break;
    }
  }
  r.get("/users/:id", hello);  // the 50th route: the one measured
  return cluster::run(r, argc, argv);
}
