// Landmark smoothing in face-size units (runtime/smoothing.py): none, ema, one_euro, kalman, with
// the Python defaults. Filters use the real interval between timestamps, 1 / fps without one.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "geometry.hpp"

namespace edgemark {

struct OneEuroParams {
    double min_cutoff = 1.0;  // Hz when still
    double beta = 5.0;        // s per face size
    double d_cutoff = 1.0;    // Hz of the velocity estimate
};
struct EmaParams {
    double alpha = 0.5;
};
struct KalmanParams {
    double process_noise = 1.0;        // face sizes / s^2
    double measurement_noise = 0.006;  // face sizes
};

class Smoother {
public:
    explicit Smoother(double fps) : fps_(fps) {}
    virtual ~Smoother() = default;
    // (K, 2) smoothed positions, rounded to float32 as the Python smoothers return them.
    Points smooth(const Points& points, std::optional<double> timestamp_s, double face_size);
    void reset();

protected:
    virtual Points smooth_points(const Points& points, double interval_s, double face_size) = 0;
    virtual void reset_state() = 0;

private:
    double fps_;
    std::optional<double> last_time_;
    size_t count_ = 0;  // points per face of the track (0: none yet)
};

// runtime.smoothing.make_smoother: "none", "ema", "one_euro" or "kalman" with default parameters.
// Throws UsageError for another name.
std::unique_ptr<Smoother> make_smoother(const std::string& name, double fps);

// sqrt(width * height) of the points' bounding box, the longer side when that is 0, at least 1.
double face_size(const Points& points);

}  // namespace edgemark
