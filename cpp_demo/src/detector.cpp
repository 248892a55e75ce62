#include "detector.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include <opencv2/imgproc.hpp>

#include "errors.hpp"
#include "landmarker.hpp"

namespace edgemark {
namespace {

constexpr int kStrides[3] = {8, 16, 32};
constexpr int kPadding = 32;  // the network's input sides are multiples of its largest stride
const char* const kYuNetHelp =
    "download face_detection_yunet_2023mar.onnx from the OpenCV model zoo (github.com/opencv/opencv_zoo, "
    "models/face_detection_yunet) and pass --detector yunet:PATH";

}  // namespace

std::vector<size_t> nms_boxes(const std::vector<cv::Rect>& boxes, const std::vector<float>& scores, float score_threshold,
                              float nms_threshold, int top_k) {
    std::vector<size_t> order;
    for (size_t i = 0; i < scores.size(); ++i) {
        if (scores[i] > score_threshold) order.push_back(i);
    }
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
    if (top_k > 0 && order.size() > static_cast<size_t>(top_k)) order.resize(top_k);
    std::vector<size_t> kept;
    for (size_t index : order) {
        bool keep = true;
        for (size_t other : kept) {
            const cv::Rect& a = boxes[index];
            const cv::Rect& b = boxes[other];
            double inter = (a & b).area();
            double total = static_cast<double>(a.area()) + b.area();
            float overlap = total <= 0 ? 1.0f : static_cast<float>(inter / (total - inter));
            if (overlap > nms_threshold) {
                keep = false;
                break;
            }
        }
        if (keep) kept.push_back(index);
    }
    return kept;
}

YuNetDetector::YuNetDetector(const std::string& model_path, const YuNetParams& params, int threads) : params_(params) {
    std::shared_ptr<ov::Model> model;
    try {
        model = core_.read_model(model_path);
    } catch (const std::exception& error) {
        throw EdgemarkError(model_path + ": OpenVINO could not load it as a YuNet ONNX model (" + first_line(error.what()) +
                            "); " + kYuNetHelp);
    }
    if (model->inputs().size() != 1 || model->outputs().size() != 12) {
        throw EdgemarkError(model_path + ": not a YuNet 2023mar model (expected 1 input and 12 outputs, cls/obj/bbox/kps at "
                            "strides 8, 16, 32); " + kYuNetHelp);
    }
    // Output order by name where the file names them (cls_8 ... kps_32), else the file's order.
    const char* names[12] = {"cls_8", "cls_16", "cls_32", "obj_8", "obj_16", "obj_32",
                             "bbox_8", "bbox_16", "bbox_32", "kps_8", "kps_16", "kps_32"};
    for (int slot = 0; slot < 12; ++slot) {
        size_t found = slot;
        for (size_t index = 0; index < model->outputs().size(); ++index) {
            if (model->output(index).get_names().count(names[slot])) found = index;
        }
        output_order_.push_back(found);
    }
    model->reshape(ov::PartialShape{1, 3, ov::Dimension::dynamic(), ov::Dimension::dynamic()});
    try {
        // f32 execution, as OpenCV's own DNN runs it: bf16 would move the boxes away from the Python detector's.
        compiled_ = core_.compile_model(model, "CPU", compile_config("fp32", threads));
    } catch (const std::exception& error) {
        throw EdgemarkError(model_path + ": OpenVINO cannot compile YuNet on CPU (" + first_line(error.what()) + ")");
    }
    request_ = compiled_.create_infer_request();
}

double YuNetDetector::scale_for(int shorter_side, std::optional<double> min_size) const {
    if (params_.scale) return *params_.scale;
    double smallest = min_size.value_or(params_.min_size);
    if (smallest <= 0) return 1.0;
    return std::min(1.0, kSmallestFacePx / (smallest * shorter_side));
}

std::vector<RawFace> YuNetDetector::detect_raw(const cv::Mat& image) {
    auto started = std::chrono::steady_clock::now();
    int width = image.cols, height = image.rows;
    int padded_width = ((width - 1) / kPadding + 1) * kPadding;
    int padded_height = ((height - 1) / kPadding + 1) * kPadding;
    // (1, 3, H', W') float BGR 0-255: the image zero-padded right and below, no mean, no scaling.
    ov::Tensor input(ov::element::f32, ov::Shape{1, 3, static_cast<size_t>(padded_height), static_cast<size_t>(padded_width)});
    float* data = input.data<float>();
    std::fill(data, data + input.get_size(), 0.0f);
    size_t plane = static_cast<size_t>(padded_height) * padded_width;
    for (int y = 0; y < height; ++y) {
        const uint8_t* row = image.ptr<uint8_t>(y);
        for (int x = 0; x < width; ++x) {
            size_t at = static_cast<size_t>(y) * padded_width + x;
            data[at] = row[3 * x];
            data[plane + at] = row[3 * x + 1];
            data[2 * plane + at] = row[3 * x + 2];
        }
    }
    request_.set_input_tensor(input);
    request_.infer();
    std::vector<RawFace> candidates;
    for (int level = 0; level < 3; ++level) {
        int stride = kStrides[level];
        int columns = padded_width / stride, rows = padded_height / stride;
        const float* cls = request_.get_output_tensor(output_order_[level]).data<const float>();
        const float* obj = request_.get_output_tensor(output_order_[3 + level]).data<const float>();
        const float* bbox = request_.get_output_tensor(output_order_[6 + level]).data<const float>();
        const float* kps = request_.get_output_tensor(output_order_[9 + level]).data<const float>();
        for (int r = 0; r < rows; ++r) {
            for (int c = 0; c < columns; ++c) {
                size_t index = static_cast<size_t>(r) * columns + c;
                float cls_score = std::min(std::max(cls[index], 0.0f), 1.0f);
                float obj_score = std::min(std::max(obj[index], 0.0f), 1.0f);
                RawFace face;
                face.score = std::sqrt(cls_score * obj_score);
                if (!(face.score > params_.score_threshold)) continue;  // NMS drops these anyway
                // Centre offsets in cells, log sizes in strides.
                float centre_x = (c + bbox[index * 4 + 0]) * stride;
                float centre_y = (r + bbox[index * 4 + 1]) * stride;
                face.width = std::exp(bbox[index * 4 + 2]) * stride;
                face.height = std::exp(bbox[index * 4 + 3]) * stride;
                face.x = centre_x - face.width / 2.0f;
                face.y = centre_y - face.height / 2.0f;
                for (int n = 0; n < 5; ++n) {
                    face.keypoints[2 * n] = (kps[index * 10 + 2 * n] + c) * stride;
                    face.keypoints[2 * n + 1] = (kps[index * 10 + 2 * n + 1] + r) * stride;
                }
                candidates.push_back(face);
            }
        }
    }
    std::vector<cv::Rect> boxes;
    std::vector<float> scores;
    for (const auto& face : candidates) {
        boxes.emplace_back(static_cast<int>(face.x), static_cast<int>(face.y), static_cast<int>(face.width),
                           static_cast<int>(face.height));
        scores.push_back(face.score);
    }
    std::vector<RawFace> faces;
    for (size_t index : nms_boxes(boxes, scores, params_.score_threshold, params_.nms_threshold, params_.top_k)) {
        faces.push_back(candidates[index]);
    }
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return faces;
}

std::vector<Box> YuNetDetector::detect(const cv::Mat& frame, std::optional<double> min_size_override) {
    int height = frame.rows, width = frame.cols;
    double min_size = min_size_override.value_or(params_.min_size);
    double scale = scale_for(std::min(height, width), min_size);
    cv::Mat image = frame;
    if (scale < 1) {
        cv::Size small(std::max(1L, round_half_even(width * scale)), std::max(1L, round_half_even(height * scale)));
        cv::resize(frame, image, small, 0, 0, cv::INTER_AREA);
    }
    // Exact per-axis factors after rounding the resized size.
    double factor_x = static_cast<double>(width) / image.cols, factor_y = static_cast<double>(height) / image.rows;
    double min_side = min_size * std::min(image.rows, image.cols);
    std::vector<RawFace> faces = detect_raw(image);
    std::vector<std::pair<double, Box>> found;  // (area in the detection image, box in frame pixels)
    for (const auto& face : faces) {
        double x = face.x, y = face.y, w = face.width, h = face.height;
        if (!(w >= min_side && h >= min_side)) continue;
        // Pixel edges in the detection image -> pixel-centre coordinates in the frame.
        Box box{x * factor_x - 0.5, y * factor_y - 0.5, (x + w) * factor_x - 0.5, (y + h) * factor_y - 0.5};
        found.emplace_back(w * h, box);
    }
    std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<Box> boxes;
    for (const auto& [area, box] : found) {
        // The Python detector hands float32 boxes on.
        boxes.push_back({static_cast<float>(box.x1), static_cast<float>(box.y1), static_cast<float>(box.x2), static_cast<float>(box.y2)});
    }
    return boxes;
}

}  // namespace edgemark
