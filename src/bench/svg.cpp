// SVG building blocks (see include/sluice/bench/svg.hpp).
#include "sluice/bench/svg.hpp"

#include <cmath>
#include <cstdio>

namespace sluice::bench::svg {

std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

double nice_step(double max, int ticks) {
  if (!(max > 0)) return 1;
  const double raw = max / ticks;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  const double f = raw / mag;
  const double nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return nice * mag;
}

double nice_max(double max, double step) {
  return std::max(step, std::ceil(max / step) * step);
}

const char* colour(std::size_t i) {
  static const char* palette[] = {"#d1495b", "#2e86ab", "#3a9d23", "#8e6c8a",
                                  "#edae49", "#66545e", "#00798c", "#f26419"};
  return palette[i % (sizeof palette / sizeof *palette)];
}

std::string tick(double v) {
  char buf[32];
  if (std::fabs(v - std::round(v)) < 1e-9) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%g", v);
  }
  return buf;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

void open(std::ostringstream& out, double width, double height, std::string_view title) {
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << num(width) << "\" height=\""
      << num(height) << "\" viewBox=\"0 0 " << num(width) << " " << num(height)
      << "\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"11\">\n";
  out << "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  out << "<text x=\"16\" y=\"24\" font-size=\"15\" font-weight=\"bold\">" << escape(title)
      << "</text>\n";
}

void axes(std::ostringstream& out, const Axes& a, std::string_view x_title,
          std::string_view y_title) {
  out << "<rect x=\"" << num(a.x0) << "\" y=\"" << num(a.y0) << "\" width=\"" << num(a.pw)
      << "\" height=\"" << num(a.ph) << "\" fill=\"#fafafa\" stroke=\"#bbb\"/>\n";
  for (double v = 0; v <= a.y_max + 1e-9; v += a.y_step) {
    out << "<line x1=\"" << num(a.x0) << "\" x2=\"" << num(a.x0 + a.pw) << "\" y1=\""
        << num(a.py(v)) << "\" y2=\"" << num(a.py(v)) << "\" stroke=\"#e4e4e4\"/>";
    out << "<text x=\"" << num(a.x0 - 5) << "\" y=\"" << num(a.py(v) + 4)
        << "\" text-anchor=\"end\" fill=\"#444\">" << tick(v) << "</text>\n";
  }
  for (double v = 0; v <= a.x_max + 1e-9; v += a.x_step) {
    out << "<line x1=\"" << num(a.px(v)) << "\" x2=\"" << num(a.px(v)) << "\" y1=\"" << num(a.y0)
        << "\" y2=\"" << num(a.y0 + a.ph) << "\" stroke=\"#eeeeee\"/>";
    out << "<text x=\"" << num(a.px(v)) << "\" y=\"" << num(a.y0 + a.ph + 15)
        << "\" text-anchor=\"middle\" fill=\"#444\">" << tick(v) << "</text>\n";
  }
  out << "<text x=\"" << num(a.x0 + a.pw / 2) << "\" y=\"" << num(a.y0 + a.ph + 32)
      << "\" text-anchor=\"middle\" fill=\"#444\">" << escape(x_title) << "</text>\n";
  out << "<text transform=\"translate(" << num(a.x0 - 42) << "," << num(a.y0 + a.ph / 2)
      << ") rotate(-90)\" text-anchor=\"middle\" fill=\"#444\">" << escape(y_title) << "</text>\n";
}

}  // namespace sluice::bench::svg
