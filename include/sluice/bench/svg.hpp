// Small SVG building blocks shared by sluice-bench's charts (report.cpp's latency chart and
// adaptive.cpp's limit-over-time chart). Pure text; no scripts, no external fonts.
#pragma once

#include <cstddef>
#include <sstream>
#include <string>
#include <string_view>

namespace sluice::bench::svg {

std::string escape(std::string_view s);
/// A "nice" step (1, 2, 2.5, 5 x 10^k) for about `ticks` ticks over [0, max]; 1 when max <= 0.
double nice_step(double max, int ticks);
/// The smallest multiple of `step` >= max (at least one step).
double nice_max(double max, double step);
/// The i-th colour of the palette (cycles).
const char* colour(std::size_t i);
/// Axis labels: whole numbers without decimals ("50", not "50.0").
std::string tick(double v);
/// Coordinates: one decimal.
std::string num(double v);

/// The opening <svg> element with a white background and a bold title at the top left.
void open(std::ostringstream& out, double width, double height, std::string_view title);

/// A plot area at (x0, y0) of pw x ph: background, grid lines and tick labels for [0, x_max]
/// and [0, y_max], and the axis titles.
struct Axes {
  double x0 = 0, y0 = 0, pw = 0, ph = 0;
  double x_max = 1, x_step = 1, y_max = 1, y_step = 1;
  double px(double x) const { return x0 + x / x_max * pw; }
  double py(double y) const { return y0 + ph - y / y_max * ph; }
};
void axes(std::ostringstream& out, const Axes& a, std::string_view x_title,
          std::string_view y_title);

}  // namespace sluice::bench::svg
