// What `python -m runtime.track` writes: the annotated video, the CSV (its columns and number
// formats) and the JSON, each under a hidden partial name until it is complete.
#pragma once

#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include "tracker.hpp"

namespace edgemark {

// Python's repr of np.round(value, 2): round half to even at two decimals, shortest digits.
std::string python_round2(double value);

// runtime.track.draw: landmarks, ids and the FPS on a copy of the frame.
cv::Mat draw(const cv::Mat& frame, const std::vector<Face>& faces, double fps);

struct OutputPaths {
    std::string video, csv, json;
};

class Outputs {
public:
    // `images`: an image folder's file names, one per frame (the CSV's image column); `stills`: those
    // images are independent photographs (a row for an image without a face).
    Outputs(const OutputPaths& paths, double fps, int num_points, const std::vector<std::string>* images, bool stills);
    ~Outputs();
    void write(const cv::Mat* frame, const FrameResult& result, double fps);
    // Finish every output, then rename each into place; returns the paths written.
    std::vector<std::string> close();
    // Close and remove every partial file: a failed run leaves nothing behind.
    void abort();

private:
    std::string temporary(const std::string& final_path);

    OutputPaths paths_;
    double fps_;
    const std::vector<std::string>* images_;
    bool stills_;
    cv::VideoWriter video_;
    cv::Size size_;
    std::ofstream csv_, json_;
    int json_frames_ = 0;
    std::vector<std::pair<std::string, std::string>> temporary_;  // (final, partial)
};

}  // namespace edgemark
