// hello: the smallest cluster. Answers "Hello World" on every path.
//   build/examples/hello --port 8080 --workers 2
//   curl http://127.0.0.1:8080/
#include <cluster/cluster.hpp>

int main(int argc, char** argv) {
  auto hello = [](const cluster::request&) { return cluster::response::text("Hello World\n"); };
  return cluster::run(hello, argc, argv);
}
