// The README's example, built from a project that uses cluster as a subproject.
#include <cluster/cluster.hpp>

int main(int argc, char** argv) {
  auto hello = [](const cluster::request&) { return cluster::response::text("Hello World\n"); };
  return cluster::run(hello, argc, argv);
}
