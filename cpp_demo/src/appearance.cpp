#include "appearance.hpp"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

namespace edgemark {
namespace {

constexpr int kFrameSamples = 64;  // pixels sampled along a frame's longer side (at least; under twice)
constexpr int kFaceSamples = 32;   // pixels sampled across a face's box

// Every step-th pixel of a region, as numpy's image[top:bottom:step, left:right:step].
cv::Mat subsample(const cv::Mat& image, int top, int bottom, int left, int right, int step) {
    int rows = (bottom - top + step - 1) / step, columns = (right - left + step - 1) / step;
    cv::Mat small(rows, columns, CV_8UC3);
    for (int y = 0; y < rows; ++y) {
        const cv::Vec3b* source = image.ptr<cv::Vec3b>(top + y * step);
        cv::Vec3b* target = small.ptr<cv::Vec3b>(y);
        for (int x = 0; x < columns; ++x) target[x] = source[left + x * step];
    }
    return small;
}

Signature signature_of(const cv::Mat& small_bgr) {
    cv::Mat hsv, grey, colour_hist, grey_hist;
    cv::cvtColor(small_bgr, hsv, cv::COLOR_BGR2HSV);
    cv::cvtColor(small_bgr, grey, cv::COLOR_BGR2GRAY);
    int channels[] = {0, 1, 2}, colour_bins[] = {8, 4, 4};
    float hue[] = {0, 180}, level[] = {0, 256};
    const float* colour_ranges[] = {hue, level, level};
    cv::calcHist(&hsv, 1, channels, cv::Mat(), colour_hist, 3, colour_bins, colour_ranges);
    int grey_channel[] = {0}, grey_bins[] = {32};
    const float* grey_ranges[] = {level};
    cv::calcHist(&grey, 1, grey_channel, cv::Mat(), grey_hist, 1, grey_bins, grey_ranges);
    Signature signature;
    signature.colour = colour_hist.reshape(1, 1).clone();
    signature.grey = grey_hist.reshape(1, 1).clone();
    signature.colour /= std::max(cv::sum(signature.colour)[0], 1.0);
    signature.grey /= std::max(cv::sum(signature.grey)[0], 1.0);
    return signature;
}

}  // namespace

Signature frame_signature(const cv::Mat& image) {
    int step = std::max(1, std::max(image.rows, image.cols) / kFrameSamples);
    return signature_of(subsample(image, 0, image.rows, 0, image.cols, step));
}

std::optional<Signature> face_signature(const cv::Mat& image, const Box& box) {
    double half = std::max(box.x2 - box.x1, box.y2 - box.y1) / 2;
    double centre_x = (box.x1 + box.x2) / 2, centre_y = (box.y1 + box.y2) / 2;
    int left = std::max(0, static_cast<int>(std::floor(centre_x - half)));
    int top = std::max(0, static_cast<int>(std::floor(centre_y - half)));
    int right = std::min(image.cols, static_cast<int>(std::ceil(centre_x + half)) + 1);
    int bottom = std::min(image.rows, static_cast<int>(std::ceil(centre_y + half)) + 1);
    if (right - left < 2 || bottom - top < 2) return std::nullopt;
    int step = std::max(1, std::min(right - left, bottom - top) / kFaceSamples);
    return signature_of(subsample(image, top, bottom, left, right, step));
}

bool differs(const Signature& first, const Signature& second, double colour_distance, double grey_distance) {
    double colour = cv::compareHist(first.colour, second.colour, cv::HISTCMP_BHATTACHARYYA);
    double grey = cv::compareHist(first.grey, second.grey, cv::HISTCMP_BHATTACHARYYA);
    return colour >= colour_distance && grey >= grey_distance;
}

Signature blend(const Signature& reference, const Signature& signature, double weight) {
    Signature mixed;
    mixed.colour = (1 - weight) * reference.colour + weight * signature.colour;
    mixed.grey = (1 - weight) * reference.grey + weight * signature.grey;
    return mixed;
}

}  // namespace edgemark
