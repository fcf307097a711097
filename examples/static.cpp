// static: serves the files under a directory with sendfile(2). GET /a/b.css
// sends <root>/a/b.css with Content-Length, Last-Modified and a Content-Type
// chosen by its extension; "/" sends index.html; a missing file is 404, a
// directory 403. A path with a segment that starts with '.' (hidden files;
// the router has already resolved "..") is 404. The root is $STATIC_ROOT,
// or the current directory. /about shows a shared body: built once, then
// written from that one string for every request, never copied.
//   STATIC_ROOT=public build/examples/static --port 8080
//   curl -i http://127.0.0.1:8080/index.html
#include <cluster/cluster.hpp>

#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

int main(int argc, char** argv) {
  const char* from_env = std::getenv("STATIC_ROOT");
  const std::string root = from_env != nullptr && *from_env != '\0' ? from_env : ".";
  auto about = std::make_shared<const std::string>("static files from " + root + "\n");

  cluster::router r;
  r.get("/about", [about](const cluster::request&) { return cluster::response::shared(about, "text/plain"); });
  r.get("/*path", [&root](const cluster::request& req) {
    std::string_view path = req.param("path");
    if (path.empty()) path = "index.html";
    for (std::size_t at = 0; at <= path.size();) {  // every segment
      std::size_t end = std::min(path.find('/', at), path.size());
      if (end > at && path[at] == '.') return cluster::response::text("Not Found\n", 404);
      at = end + 1;
    }
    return cluster::response::file(root + "/" + std::string(path));
  });
  return cluster::run(r, argc, argv);
}
