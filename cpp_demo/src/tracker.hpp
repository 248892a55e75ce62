// The video landmark tracker (runtime/tracker.py): detect, track by the previous frame's landmarks,
// confirm by re-detection, end tracks on shot cuts and face changes, smooth.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "appearance.hpp"
#include "detector.hpp"
#include "landmarker.hpp"
#include "smoothing.hpp"

namespace edgemark {

struct TrackerConfig {
    std::string smoothing = "one_euro";
    double fps = 30.0;
    int redetect_every = 30;
    int max_faces = 4;
    double min_confidence = 0.25;
    int max_missed_detections = 2;
    double match_iou = 0.3;
    double merge_iou = 0.5;
    double cut_distance = kCutDistance;
    double face_change_distance = kFaceChangeDistance;
};

struct Face {
    int track_id = 0;
    Points points;      // smoothed, frame pixels
    Points raw_points;  // before smoothing
    float confidence = 0;  // mean landmark confidence (NaN for coords models)
    Box box;            // bounding box of the raw landmarks
};

struct FrameResult {
    int index = 0;
    std::vector<Face> faces;
    bool detected = false;
    bool cut = false;
    std::string error;
    double seconds = 0;
    double infer_seconds = 0;
};

// A face box given from outside (--boxes): the tracker's detection and track keeping are skipped.
struct GivenBox {
    int face_id = 0;
    std::string kind;  // "detector" or "landmarks"
    Box box;
};

class Tracker {
public:
    Tracker(Landmarker& landmarker, YuNetDetector* detector, const TrackerConfig& config);

    // Track one frame (BGR, 8-bit, 3 channels; grey and BGRA are converted). A bad frame gives a
    // result with `error` set and no faces; the tracker goes on.
    FrameResult process(const cv::Mat& frame, std::optional<double> timestamp_s);

    // Landmarks for the given boxes only, each smoothed under its face id (parity runs: the same
    // crops as another run, without this tracker's detection and track decisions).
    FrameResult process_given(const cv::Mat& frame, const std::vector<GivenBox>& boxes, std::optional<double> timestamp_s);

    void reset();
    int non_finite_faces() const { return non_finite_faces_; }

private:
    struct Track {
        int track_id = 0;
        Points points;
        std::unique_ptr<Smoother> smoother;
        int missed_detections = 0;
        Box box;
        double size = 1.0;
        std::optional<Signature> signature, reference;
    };

    bool shot_cut(const cv::Mat& image);
    bool same_face(Track& track, const cv::Mat& image, const Box& box);
    std::vector<Face> merge_overlapping(std::vector<Face> faces);
    Face update(Track& track, const FaceLandmarks& landmarks, const Box& box, double size, std::optional<double> timestamp_s);
    std::vector<Box> detect_frame(const cv::Mat& image, int room);
    std::vector<Box> detect_near_tracks(const cv::Mat& image);
    std::vector<Box> detect_in_region(const cv::Mat& image, const Box& box, double face_px);
    std::vector<Box> match_detections(const std::vector<Box>& boxes);
    bool plausible(const Points& points, float confidence, double size, std::optional<double> previous_size);
    bool usable_frame(const cv::Mat& frame, cv::Mat& image, FrameResult& result);

    Landmarker& landmarker_;
    YuNetDetector* detector_;
    TrackerConfig config_;
    std::vector<Track> tracks_;
    std::vector<std::pair<int, std::unique_ptr<Smoother>>> given_smoothers_;  // process_given: face id -> smoother
    int frame_index_ = -1;
    cv::Size frame_size_;
    int next_id_ = 0;
    std::optional<Signature> frame_signature_;
    bool search_next_ = false;
    int non_finite_faces_ = 0;
};

// (x1, y1, x2, y2) of the points and their face size (runtime.tracker._box_and_size).
std::pair<Box, double> box_and_size(const Points& points);

}  // namespace edgemark
