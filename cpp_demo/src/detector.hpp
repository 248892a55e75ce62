// YuNet 2023mar face detection on OpenVINO (runtime/detect.py's YuNetDetector, which runs the same
// ONNX file through cv2.FaceDetectorYN): Debian's OpenCV 4.6 reads only the 2022 YuNet, so the
// network runs on OpenVINO and its outputs are decoded here (see README.md).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <openvino/openvino.hpp>

#include "geometry.hpp"

namespace edgemark {

struct YuNetParams {
    double min_size = 0.1;         // smallest face, as a fraction of the frame's shorter side
    std::optional<double> scale;   // resize factor of the detection copy; unset: matched to min_size
    float score_threshold = 0.6f;
    float nms_threshold = 0.3f;
    int top_k = 50;
};

// A raw detection in the detection image: x, y, w, h in pixel edges, five keypoints, score.
struct RawFace {
    float x = 0, y = 0, width = 0, height = 0;
    float keypoints[10] = {};
    float score = 0;
};

class YuNetDetector {
public:
    static constexpr double kSmallestFacePx = 32.0;  // below this width YuNet starts to miss faces
    YuNetDetector(const std::string& model_path, const YuNetParams& params, int threads = 0);

    // Boxes in frame pixels (pixel centres at integers), largest area first; `min_size` overrides
    // the detector's smallest face for this call (a quick look for large faces).
    std::vector<Box> detect(const cv::Mat& frame_bgr, std::optional<double> min_size = std::nullopt);

    // The network and its decoding on an image as it is (no resizing): cv2.FaceDetectorYN.detect.
    std::vector<RawFace> detect_raw(const cv::Mat& image_bgr);

    double scale_for(int shorter_side, std::optional<double> min_size = std::nullopt) const;
    const YuNetParams& params() const { return params_; }
    // Face widths a confirming search around a track looks at (runtime.detect.YuNetDetector.confirm_face_px).
    const std::vector<double>& confirm_face_px() const { return confirm_face_px_; }
    const BoxConversion& box_conversion() const { return kYuNetBoxConversion; }
    double seconds() const { return seconds_; }

private:
    YuNetParams params_;
    ov::Core core_;
    ov::CompiledModel compiled_;
    ov::InferRequest request_;
    std::vector<size_t> output_order_;  // cls_8, cls_16, cls_32, obj_*, bbox_*, kps_* -> output index
    std::vector<double> confirm_face_px_{32.0, 64.0};
    double seconds_ = 0;
};

// Greedy non-maximum suppression as cv::dnn::NMSBoxes (integer boxes, score > threshold, top_k
// candidates): the indices kept, best score first.
std::vector<size_t> nms_boxes(const std::vector<cv::Rect>& boxes, const std::vector<float>& scores, float score_threshold,
                              float nms_threshold, int top_k);

// Python's round() (half to even) of a non-negative value, as the detection copy's size uses it.
inline long round_half_even(double value) { return std::lrint(value); }

}  // namespace edgemark
