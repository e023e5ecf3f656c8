// Must NOT compile with cmake/core_purity_guard.hpp force-included.
#include <boost/asio/io_context.hpp>
int main() {
  boost::asio::io_context io;
}
