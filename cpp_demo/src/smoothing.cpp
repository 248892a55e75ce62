#include "smoothing.hpp"

#include <cmath>

#include "errors.hpp"

namespace edgemark {
namespace {

// Weight of the new sample for a first-order low-pass at `cutoff_hz` (One Euro's alpha).
double smoothing_factor(double interval_s, double cutoff_hz) {
    double time_constant = 1.0 / (2.0 * M_PI * cutoff_hz);
    return 1.0 / (1.0 + time_constant / interval_s);
}

class PassThrough : public Smoother {
public:
    using Smoother::Smoother;

protected:
    Points smooth_points(const Points& points, double, double) override { return points; }
    void reset_state() override {}
};

class Ema : public Smoother {
public:
    Ema(EmaParams params, double fps) : Smoother(fps), params_(params), fps_(fps) {}

protected:
    Points smooth_points(const Points& points, double interval_s, double) override {
        if (state_.empty()) {
            state_ = points;
        } else {
            double weight = 1.0 - std::pow(1.0 - params_.alpha, interval_s * fps_);
            for (size_t i = 0; i < points.size(); ++i) state_[i] = state_[i] + weight * (points[i] - state_[i]);
        }
        return state_;
    }
    void reset_state() override { state_.clear(); }

private:
    EmaParams params_;
    double fps_;
    Points state_;
};

class OneEuro : public Smoother {
public:
    OneEuro(OneEuroParams params, double fps) : Smoother(fps), params_(params) {}

protected:
    Points smooth_points(const Points& points, double interval_s, double size) override {
        if (position_.empty()) {
            position_ = points;
            velocity_.assign(points.size(), cv::Point2d(0, 0));
            return points;
        }
        double velocity_weight = smoothing_factor(interval_s, params_.d_cutoff);
        for (size_t i = 0; i < points.size(); ++i) {
            cv::Point2d raw_velocity = (points[i] - position_[i]) / interval_s;
            velocity_[i] = velocity_[i] + velocity_weight * (raw_velocity - velocity_[i]);
            // Speed in face sizes per second; x and y share the cutoff.
            double speed = std::sqrt(velocity_[i].x * velocity_[i].x + velocity_[i].y * velocity_[i].y) / size;
            double weight = smoothing_factor(interval_s, params_.min_cutoff + params_.beta * speed);
            position_[i] = position_[i] + weight * (points[i] - position_[i]);
        }
        return position_;
    }
    void reset_state() override {
        position_.clear();
        velocity_.clear();
    }

private:
    OneEuroParams params_;
    Points position_, velocity_;  // px, px/s
};

class Kalman : public Smoother {
public:
    Kalman(KalmanParams params, double fps) : Smoother(fps), params_(params) {}

protected:
    // Constant velocity per coordinate; every coordinate shares the (position, velocity) covariance.
    Points smooth_points(const Points& points, double dt, double size) override {
        double measurement_variance = std::pow(params_.measurement_noise * size, 2);
        if (position_.empty()) {
            position_ = points;
            velocity_.assign(points.size(), cv::Point2d(0, 0));
            covariance_ = cv::Matx22d(measurement_variance, 0, 0, size * size);
            return points;
        }
        cv::Matx22d transition(1.0, dt, 0.0, 1.0);
        double acceleration_variance = std::pow(params_.process_noise * size, 2);
        cv::Matx22d process = acceleration_variance * cv::Matx22d(std::pow(dt, 4) / 4, std::pow(dt, 3) / 2, std::pow(dt, 3) / 2, dt * dt);
        cv::Matx22d covariance = transition * covariance_ * transition.t() + process;
        double innovation_variance = covariance(0, 0) + measurement_variance;
        double gain[2] = {covariance(0, 0) / innovation_variance, covariance(1, 0) / innovation_variance};
        for (size_t i = 0; i < points.size(); ++i) {
            cv::Point2d predicted = position_[i] + dt * velocity_[i];
            cv::Point2d innovation = points[i] - predicted;
            position_[i] = predicted + gain[0] * innovation;
            velocity_[i] = velocity_[i] + gain[1] * innovation;
        }
        covariance_ = covariance - cv::Matx22d(gain[0] * covariance(0, 0), gain[0] * covariance(0, 1),
                                               gain[1] * covariance(0, 0), gain[1] * covariance(0, 1));
        return position_;
    }
    void reset_state() override {
        position_.clear();
        velocity_.clear();
    }

private:
    KalmanParams params_;
    Points position_, velocity_;
    cv::Matx22d covariance_;
};

}  // namespace

Points Smoother::smooth(const Points& points, std::optional<double> timestamp_s, double size) {
    if (count_ != points.size()) {  // another number of points: a new track
        reset();
        count_ = points.size();
    }
    double interval = 1.0 / fps_;
    if (timestamp_s) {
        if (last_time_ && *timestamp_s > *last_time_) interval = *timestamp_s - *last_time_;
        last_time_ = *timestamp_s;
    }
    Points smoothed = smooth_points(points, interval, size);
    for (auto& point : smoothed) point = {static_cast<float>(point.x), static_cast<float>(point.y)};
    return smoothed;
}

void Smoother::reset() {
    last_time_.reset();
    count_ = 0;
    reset_state();
}

std::unique_ptr<Smoother> make_smoother(const std::string& name, double fps) {
    if (!(fps > 0 && std::isfinite(fps))) throw UsageError("smoother fps must be a positive number, got " + std::to_string(fps));
    if (name == "none") return std::make_unique<PassThrough>(fps);
    if (name == "ema") return std::make_unique<Ema>(EmaParams{}, fps);
    if (name == "one_euro") return std::make_unique<OneEuro>(OneEuroParams{}, fps);
    if (name == "kalman") return std::make_unique<Kalman>(KalmanParams{}, fps);
    throw UsageError("Unknown smoother '" + name + "'. Valid: none, ema, one_euro, kalman.");
}

double face_size(const Points& points) {
    Box box = bounding_box(points);
    double width = box.x2 - box.x1, height = box.y2 - box.y1;
    double size = std::sqrt(std::max(width * height, 0.0));
    return size > 0 ? size : std::max({width, height, 1.0});
}

}  // namespace edgemark
