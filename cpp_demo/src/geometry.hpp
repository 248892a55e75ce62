// Boxes, the crop rule's matrices and the detector-box <-> landmark-box relation (runtime/crop.py,
// runtime/landmarker.py). Pixel centres are at integers, in the frame and in the input square.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include <opencv2/core.hpp>

#include "card.hpp"

namespace edgemark {

struct Box {
    double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
    double width() const { return x2 - x1; }
    double height() const { return y2 - y1; }
};

using Points = std::vector<cv::Point2d>;  // (K, 2) landmarks in frame pixels

// How a detector's box relates to the landmarks' bounding box: the landmarks' box has the detector
// box's width and height times `scale`, its centre `shift_y` detector heights lower.
struct BoxConversion {
    double scale = 0.80;
    double shift_y = 0.16;

    Box detector_to_landmarks(const Box& box) const {
        double centre_x = (box.x1 + box.x2) / 2, centre_y = (box.y1 + box.y2) / 2;
        double width = box.x2 - box.x1, height = box.y2 - box.y1;
        centre_y = centre_y + shift_y * height;
        return from_centre(centre_x, centre_y, width * scale, height * scale);
    }
    Box landmarks_to_detector(const Box& box) const {
        double centre_x = (box.x1 + box.x2) / 2, centre_y = (box.y1 + box.y2) / 2;
        double width = (box.x2 - box.x1) / scale, height = (box.y2 - box.y1) / scale;
        return from_centre(centre_x, centre_y - shift_y * height, width, height);
    }
    static Box from_centre(double centre_x, double centre_y, double width, double height) {
        return {centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2};
    }
};

// runtime.landmarker: HAAR_BOX_CONVERSION and YUNET_BOX_CONVERSION (measured there).
inline constexpr BoxConversion kHaarBoxConversion{0.80, 0.16};
inline constexpr BoxConversion kYuNetBoxConversion{0.79, 0.125};

inline Box bounding_box(const Points& points) {
    Box box{points[0].x, points[0].y, points[0].x, points[0].y};
    for (const auto& point : points) {
        box.x1 = std::min(box.x1, point.x);
        box.y1 = std::min(box.y1, point.y);
        box.x2 = std::max(box.x2, point.x);
        box.y2 = std::max(box.y2, point.y);
    }
    return box;
}

// (A, B) intersection over union of two boxes (runtime.tracker.box_iou).
inline double box_iou(const Box& a, const Box& b) {
    double width = std::max(std::min(a.x2, b.x2) - std::max(a.x1, b.x1), 0.0);
    double height = std::max(std::min(a.y2, b.y2) - std::max(a.y1, b.y1), 0.0);
    double inter = width * height;
    double area_a = (a.x2 - a.x1) * (a.y2 - a.y1), area_b = (b.x2 - b.x1) * (b.y2 - b.y1);
    return inter / std::max(area_a + area_b - inter, 1e-9);
}

// 2x3 CV_64F matrix taking frame pixels to input-square pixels (runtime.crop.crop_matrix): the box
// centre (shifted down by shift_y region heights) lands at (size - 1) / 2.
inline cv::Mat crop_matrix(const Box& box, const CropRule& rule, int size) {
    double width, height;
    if (!rule.scale_y) {
        width = height = rule.scale * std::max({box.x2 - box.x1, box.y2 - box.y1, 1.0});
    } else {
        width = rule.scale * std::max(box.x2 - box.x1, 1.0);
        height = *rule.scale_y * std::max(box.y2 - box.y1, 1.0);
    }
    double centre_x = (box.x1 + box.x2) / 2.0;
    double centre_y = (box.y1 + box.y2) / 2.0 + rule.shift_y * height;
    double kx = size / width, ky = size / height;
    return (cv::Mat_<double>(2, 3) << kx, 0.0, (size - 1) / 2.0 - kx * centre_x, 0.0, ky, (size - 1) / 2.0 - ky * centre_y);
}

}  // namespace edgemark
