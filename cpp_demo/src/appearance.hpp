// Colour signatures of frames and faces (runtime/appearance.py): how the tracker sees a shot cut or
// another face under a track. HSV (8 x 4 x 4) and grey (32) histograms, Bhattacharyya distances.
#pragma once

#include <optional>

#include <opencv2/core.hpp>

#include "geometry.hpp"

namespace edgemark {

inline constexpr double kCutDistance = 0.35;
inline constexpr double kCutGreyDistance = 0.12;
inline constexpr double kFaceChangeDistance = 0.3;
inline constexpr double kFaceChangeGreyDistance = 0.15;

struct Signature {
    cv::Mat colour;  // (128,) float32, sums to 1
    cv::Mat grey;    // (32,) float32, sums to 1
};

Signature frame_signature(const cv::Mat& image_bgr);
// The signature of the square around a face's box; none when that square lies outside the frame.
std::optional<Signature> face_signature(const cv::Mat& image_bgr, const Box& box);
// Whether two signatures are at least `colour_distance` apart in colour and `grey_distance` in grey.
bool differs(const Signature& first, const Signature& second, double colour_distance, double grey_distance);
// (1 - weight) * reference + weight * signature: a track's slow running mean.
Signature blend(const Signature& reference, const Signature& signature, double weight);

}  // namespace edgemark
