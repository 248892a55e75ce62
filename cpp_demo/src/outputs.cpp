#include "outputs.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <unistd.h>

#include "errors.hpp"

namespace edgemark {
namespace {

namespace fs = std::filesystem;

// A CSV field as Python's csv module writes it (quoted when it holds a separator, quote or newline).
std::string csv_field(const std::string& text) {
    if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
    std::string quoted = "\"";
    for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
    return quoted + "\"";
}

std::string confidence_text(float confidence) {
    if (std::isnan(confidence)) return "nan";
    char text[64];
    std::snprintf(text, sizeof(text), "%.4f", confidence);
    return text;
}

}  // namespace

std::string python_round2(double value) {
    double rounded = std::nearbyint(value * 100.0) / 100.0;  // numpy's round: rint(x * 10**d) / 10**d
    if (std::isnan(rounded)) return "nan";
    if (std::isinf(rounded)) return rounded > 0 ? "inf" : "-inf";
    char text[64];
    auto result = std::to_chars(text, text + sizeof(text), rounded);  // shortest round-trip digits, as repr
    std::string out(text, result.ptr);
    if (out.find_first_of(".e") == std::string::npos) out += ".0";
    return out;
}

cv::Mat draw(const cv::Mat& frame, const std::vector<Face>& faces, double fps) {
    cv::Mat canvas = frame.clone();
    int radius = std::max(1, static_cast<int>(std::lrint(std::min(frame.rows, frame.cols) / 300.0)));
    for (const auto& face : faces) {
        for (const auto& point : face.points) {
            cv::circle(canvas, cv::Point(static_cast<int>(std::lrint(point.x)), static_cast<int>(std::lrint(point.y))), radius,
                       cv::Scalar(0, 255, 0), -1, cv::LINE_AA);
        }
        cv::putText(canvas, "#" + std::to_string(face.track_id),
                    cv::Point(static_cast<int>(face.box.x1), std::max(12, static_cast<int>(face.box.y1) - 6)),
                    cv::FONT_HERSHEY_SIMPLEX, 0.5, cv::Scalar(0, 255, 255), 1, cv::LINE_AA);
    }
    char text[32];
    std::snprintf(text, sizeof(text), "%5.1f FPS", fps);
    cv::putText(canvas, text, cv::Point(8, 22), cv::FONT_HERSHEY_SIMPLEX, 0.6, cv::Scalar(0, 0, 255), 2, cv::LINE_AA);
    return canvas;
}

Outputs::Outputs(const OutputPaths& paths, double fps, int num_points, const std::vector<std::string>* images, bool stills)
    : paths_(paths), fps_(fps), images_(images), stills_(stills) {
    try {
        if (!paths_.csv.empty()) {
            csv_.open(temporary(paths_.csv), std::ios::binary);
            if (!csv_) throw EdgemarkError(paths_.csv + ": cannot write this file (check the folder exists and is writable)");
            // Python's csv module ends rows with \r\n.
            csv_ << "frame," << (images_ ? "image," : "") << "face_id,confidence";
            for (int i = 0; i < num_points; ++i) csv_ << ",x" << i << ",y" << i;
            csv_ << "\r\n";
        }
        if (!paths_.json.empty()) {
            json_.open(temporary(paths_.json), std::ios::binary);
            if (!json_) throw EdgemarkError(paths_.json + ": cannot write this file (check the folder exists and is writable)");
            json_ << "{\"frames\": [";
        }
    } catch (...) {
        abort();
        throw;
    }
}

Outputs::~Outputs() { abort(); }

std::string Outputs::temporary(const std::string& final_path) {
    fs::path path(final_path);
    if (path.has_parent_path()) fs::create_directories(path.parent_path());
    // runtime.track.partial_path: hidden .NAME.partial-PID.EXT beside the final name.
    fs::path partial = path.parent_path() / ("." + path.stem().string() + ".partial-" + std::to_string(getpid()) + path.extension().string());
    temporary_.emplace_back(final_path, partial.string());
    return partial.string();
}

void Outputs::write(const cv::Mat* frame, const FrameResult& result, double fps) {
    if (!paths_.video.empty() && frame) {
        if (!video_.isOpened()) {
            size_ = frame->size();
            video_.open(temporary(paths_.video), cv::VideoWriter::fourcc('m', 'p', '4', 'v'), fps_, size_);
            if (!video_.isOpened()) {
                throw EdgemarkError(paths_.video + ": OpenCV cannot write a " + std::to_string(size_.width) + "x" +
                                    std::to_string(size_.height) + " video under this name (try a .mp4 or .avi name)");
            }
        }
        cv::Mat canvas = draw(*frame, result.faces, fps);
        if (canvas.size() != size_) cv::resize(canvas, canvas, size_);  // a size change mid-stream: keep the file's size
        video_.write(canvas);
    }
    std::string image;
    bool has_image = images_ && result.index < static_cast<int>(images_->size());
    if (has_image) image = csv_field((*images_)[result.index]) + ",";
    if (csv_.is_open()) {
        for (const auto& face : result.faces) {
            csv_ << result.index << "," << image << face.track_id << "," << confidence_text(face.confidence);
            for (const auto& point : face.points) csv_ << "," << python_round2(point.x) << "," << python_round2(point.y);
            csv_ << "\r\n";
        }
        if (stills_ && result.faces.empty()) {  // an image without a face: a row that says so (no id, no points)
            std::string reason = result.error.empty() ? "no face" : result.error.rfind("too small", 0) == 0 ? "too small" : "unreadable";
            csv_ << result.index << "," << image << "," << reason << "\r\n";
        }
    }
    if (json_.is_open()) {
        nlohmann::ordered_json record;
        record["frame"] = result.index;
        if (has_image) record["image"] = (*images_)[result.index];
        record["error"] = result.error.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(result.error);
        record["faces"] = nlohmann::ordered_json::array();
        for (const auto& face : result.faces) {
            nlohmann::ordered_json points = nlohmann::ordered_json::array();
            for (const auto& point : face.points) {
                points.push_back({std::nearbyint(point.x * 100.0) / 100.0, std::nearbyint(point.y * 100.0) / 100.0});
            }
            record["faces"].push_back({{"id", face.track_id},
                                       {"confidence", std::isnan(face.confidence) ? nlohmann::ordered_json() : nlohmann::ordered_json(face.confidence)},
                                       {"points", points}});
        }
        json_ << (json_frames_++ ? "," : "") << record.dump();
    }
}

std::vector<std::string> Outputs::close() {
    std::vector<std::string> finished;
    if (video_.isOpened()) {
        video_.release();
        finished.push_back(paths_.video);
    } else if (!paths_.video.empty()) {
        std::fprintf(stderr, "warning: %s not written: no usable frame to make a video of\n", paths_.video.c_str());
    }
    if (csv_.is_open()) {
        csv_.close();
        finished.push_back(paths_.csv);
    }
    if (json_.is_open()) {
        json_ << "]}";
        json_.close();
        finished.push_back(paths_.json);
    }
    for (const auto& path : finished) {
        for (auto it = temporary_.begin(); it != temporary_.end(); ++it) {
            if (it->first == path) {
                fs::rename(it->second, it->first);
                temporary_.erase(it);
                break;
            }
        }
    }
    return finished;
}

void Outputs::abort() {
    if (video_.isOpened()) video_.release();
    if (csv_.is_open()) csv_.close();
    if (json_.is_open()) json_.close();
    for (const auto& [final_path, partial] : temporary_) {
        std::error_code ignored;
        fs::remove(partial, ignored);
    }
    temporary_.clear();
}

}  // namespace edgemark
