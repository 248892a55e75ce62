#include "tracker.hpp"

#include <chrono>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "errors.hpp"

namespace edgemark {
namespace {

constexpr double kConfirmRegion = 2.0;  // region around a track searched to confirm it, in detector boxes
constexpr int kMinFrameSide = 16;       // a frame below this is broken, not a new video
constexpr double kCoarseFactor = 2.0;   // a search for one face first looks for faces this many times the smallest
constexpr double kReferenceWeight = 0.1;

double elapsed_since(std::chrono::steady_clock::time_point started) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
}

}  // namespace

std::pair<Box, double> box_and_size(const Points& points) {
    Box box = bounding_box(points);
    double width = box.x2 - box.x1, height = box.y2 - box.y1;
    double size = std::sqrt(std::max(width * height, 0.0));
    return {box, size > 0 ? size : std::max({width, height, 1.0})};
}

Tracker::Tracker(Landmarker& landmarker, YuNetDetector* detector, const TrackerConfig& config)
    : landmarker_(landmarker), detector_(detector), config_(config) {
    make_smoother(config.smoothing, config.fps);  // validate up front
}

void Tracker::reset() {
    tracks_.clear();
    given_smoothers_.clear();
    frame_size_ = cv::Size();
    frame_signature_.reset();
    search_next_ = false;
}

bool Tracker::usable_frame(const cv::Mat& frame, cv::Mat& image, FrameResult& result) {
    if (frame.empty()) {
        result.error = "no frame (got None): the camera or video returned nothing; check the source";
    } else if (frame.depth() != CV_8U) {
        result.error = "frame is not 8-bit; expected (H, W, 3) uint8 BGR";
    } else if (frame.channels() == 1) {
        cv::cvtColor(frame, image, cv::COLOR_GRAY2BGR);
    } else if (frame.channels() == 4) {
        cv::cvtColor(frame, image, cv::COLOR_BGRA2BGR);
    } else if (frame.channels() == 3) {
        image = frame;
    } else {
        result.error = "frame has " + std::to_string(frame.channels()) + " channels; expected 1, 3 or 4";
    }
    if (result.error.empty() && std::min(image.rows, image.cols) < kMinFrameSide) {
        result.error = "too small: a frame of " + std::to_string(image.cols) + "x" + std::to_string(image.rows) +
                       " pixels cannot hold a face (a broken frame?)";
    }
    if (!result.error.empty()) return false;
    if (!frame_size_.empty() && image.size() != frame_size_) reset();  // a new video: re-detect
    frame_size_ = image.size();
    return true;
}

FrameResult Tracker::process(const cv::Mat& frame, std::optional<double> timestamp_s) {
    auto started = std::chrono::steady_clock::now();
    FrameResult result;
    result.index = ++frame_index_;
    cv::Mat image;
    if (!usable_frame(frame, image, result)) {
        result.seconds = elapsed_since(started);
        return result;
    }
    result.cut = shot_cut(image);
    if (result.cut) tracks_.clear();

    bool detect_now = tracks_.empty() || search_next_ ||
                      (config_.redetect_every > 0 && frame_index_ % config_.redetect_every == 0);
    search_next_ = false;
    std::vector<Box> new_boxes;
    if (detect_now && detector_) {
        std::vector<Box> boxes = !tracks_.empty() && static_cast<int>(tracks_.size()) >= config_.max_faces
                                     ? detect_near_tracks(image)  // full: confirm the tracks only
                                     : detect_frame(image, config_.max_faces - static_cast<int>(tracks_.size()));
        new_boxes = match_detections(boxes);
    }
    result.detected = detect_now;
    // Tracked faces: cropped from their last landmarks. New faces: from their detector boxes.
    if (!tracks_.empty()) {
        std::vector<Box> boxes;
        for (const auto& track : tracks_) boxes.push_back(track.box);
        // As runtime.tracker: tracked faces go through the landmarker's own (Haar) box relation, which
        // only matters for a card whose crop rule starts from detector boxes.
        auto landmarks = landmarker_.predict(image, boxes, "landmarks", kHaarBoxConversion, &result.infer_seconds);
        std::vector<Track> kept;
        for (size_t i = 0; i < tracks_.size(); ++i) {
            auto [box, size] = box_and_size(landmarks[i].points);
            if (plausible(landmarks[i].points, landmarks[i].face_confidence, size, tracks_[i].size) &&
                same_face(tracks_[i], image, box)) {
                result.faces.push_back(update(tracks_[i], landmarks[i], box, size, timestamp_s));
                kept.push_back(std::move(tracks_[i]));
            }
        }
        search_next_ = kept.size() < tracks_.size();
        tracks_ = std::move(kept);
    }
    int room = config_.max_faces - static_cast<int>(tracks_.size());
    if (!new_boxes.empty() && room > 0) {
        if (static_cast<int>(new_boxes.size()) > room) new_boxes.resize(room);
        auto landmarks = landmarker_.predict(image, new_boxes, "detector", detector_->box_conversion(), &result.infer_seconds);
        for (const auto& face : landmarks) {
            auto [box, size] = box_and_size(face.points);
            if (!plausible(face.points, face.face_confidence, size, std::nullopt)) continue;
            Track track;
            track.track_id = next_id_++;
            track.smoother = make_smoother(config_.smoothing, config_.fps);
            track.signature = track.reference = face_signature(image, box);
            tracks_.push_back(std::move(track));
            result.faces.push_back(update(tracks_.back(), face, box, size, timestamp_s));
        }
    }
    result.faces = merge_overlapping(std::move(result.faces));
    result.seconds = elapsed_since(started);
    return result;
}

FrameResult Tracker::process_given(const cv::Mat& frame, const std::vector<GivenBox>& given, std::optional<double> timestamp_s) {
    auto started = std::chrono::steady_clock::now();
    FrameResult result;
    result.index = ++frame_index_;
    cv::Mat image;
    if (!usable_frame(frame, image, result)) {
        result.seconds = elapsed_since(started);
        return result;
    }
    for (const char* kind : {"landmarks", "detector"}) {
        std::vector<Box> boxes;
        std::vector<int> ids;
        for (const auto& item : given) {
            if (item.kind == kind) {
                boxes.push_back(item.box);
                ids.push_back(item.face_id);
            }
        }
        // Detector boxes are YuNet's; landmark boxes take the landmarker's own relation, as in process().
        const BoxConversion& conversion = std::string(kind) == "detector" ? kYuNetBoxConversion : kHaarBoxConversion;
        auto landmarks = landmarker_.predict(image, boxes, kind, conversion, &result.infer_seconds);
        for (size_t i = 0; i < landmarks.size(); ++i) {
            auto [box, size] = box_and_size(landmarks[i].points);
            Smoother* smoother = nullptr;
            for (auto& [id, existing] : given_smoothers_) {
                if (id == ids[i]) smoother = existing.get();
            }
            if (!smoother) {
                given_smoothers_.emplace_back(ids[i], make_smoother(config_.smoothing, config_.fps));
                smoother = given_smoothers_.back().second.get();
            }
            Face face;
            face.track_id = ids[i];
            face.raw_points = landmarks[i].points;
            face.points = smoother->smooth(landmarks[i].points, timestamp_s, size);
            face.confidence = landmarks[i].face_confidence;
            face.box = box;
            result.faces.push_back(std::move(face));
        }
    }
    result.seconds = elapsed_since(started);
    return result;
}

bool Tracker::shot_cut(const cv::Mat& image) {
    if (config_.cut_distance >= 1) return false;
    Signature signature = frame_signature(image);
    bool cut = frame_signature_ && differs(*frame_signature_, signature, config_.cut_distance, kCutGreyDistance);
    frame_signature_ = signature;
    return cut;
}

bool Tracker::same_face(Track& track, const cv::Mat& image, const Box& box) {
    if (config_.face_change_distance >= 1) return true;
    auto signature = face_signature(image, box);
    if (!signature || !track.signature || !track.reference) {
        track.signature = track.reference = signature;
        return true;
    }
    // Another face differs from the last frame's look and from the track's usual one; a single broken
    // frame differs from the last only.
    if (differs(*track.signature, *signature, config_.face_change_distance, kFaceChangeGreyDistance) &&
        differs(*track.reference, *signature, config_.face_change_distance, kFaceChangeGreyDistance)) {
        return false;
    }
    track.signature = signature;
    track.reference = blend(*track.reference, *signature, kReferenceWeight);
    return true;
}

std::vector<Face> Tracker::merge_overlapping(std::vector<Face> faces) {
    // tracks_ and faces are in the same order, older tracks first: the older id survives.
    std::vector<Track> kept_tracks;
    std::vector<Face> kept_faces;
    for (size_t i = 0; i < tracks_.size(); ++i) {
        bool overlaps = false;
        for (const auto& kept : kept_tracks) overlaps = overlaps || box_iou(tracks_[i].box, kept.box) >= config_.merge_iou;
        if (overlaps) continue;
        kept_tracks.push_back(std::move(tracks_[i]));
        kept_faces.push_back(std::move(faces[i]));
    }
    tracks_ = std::move(kept_tracks);
    return kept_faces;
}

Face Tracker::update(Track& track, const FaceLandmarks& landmarks, const Box& box, double size, std::optional<double> timestamp_s) {
    track.points = landmarks.points;
    track.box = box;
    track.size = size;
    Face face;
    face.track_id = track.track_id;
    face.raw_points = landmarks.points;
    face.points = track.smoother->smooth(landmarks.points, timestamp_s, size);
    face.confidence = landmarks.face_confidence;
    face.box = box;
    return face;
}

std::vector<Box> Tracker::detect_frame(const cv::Mat& image, int room) {
    const auto& params = detector_->params();
    if (room == 1 && !params.scale && 0 < params.min_size * kCoarseFactor && params.min_size * kCoarseFactor < 1) {
        auto boxes = detector_->detect(image, params.min_size * kCoarseFactor);
        if (!boxes.empty()) return boxes;
    }
    return detector_->detect(image);
}

std::vector<Box> Tracker::detect_near_tracks(const cv::Mat& image) {
    std::vector<Box> found;
    for (const auto& track : tracks_) {
        Box expected = detector_->box_conversion().landmarks_to_detector(track.box);
        for (double face_px : detector_->confirm_face_px()) {
            auto boxes = detect_in_region(image, expected, face_px);
            found.insert(found.end(), boxes.begin(), boxes.end());
            bool confirmed = false;
            for (const auto& box : boxes) confirmed = confirmed || box_iou(expected, box) >= config_.match_iou;
            if (confirmed) break;
        }
    }
    return found;
}

std::vector<Box> Tracker::detect_in_region(const cv::Mat& image, const Box& box, double face_px) {
    double side = std::max(box.x2 - box.x1, box.y2 - box.y1);
    double half = kConfirmRegion * side / 2;
    double centre_x = (box.x1 + box.x2) / 2, centre_y = (box.y1 + box.y2) / 2;
    int left = std::max(0, static_cast<int>(std::floor(centre_x - half)));
    int top = std::max(0, static_cast<int>(std::floor(centre_y - half)));
    int right = std::min(image.cols, static_cast<int>(std::ceil(centre_x + half)));
    int bottom = std::min(image.rows, static_cast<int>(std::ceil(centre_y + half)));
    if (right - left < 2 || bottom - top < 2) return {};
    double detector_scale = detector_->params().scale.value_or(1.0);
    double factor = std::min(1.0, face_px / std::max(side * detector_scale, 1.0));
    // Shrink by a whole factor first (INTER_AREA's fast path), then bilinearly by the rest.
    int whole = std::max(1, std::min({static_cast<int>(1.0 / factor), right - left, bottom - top}));
    right -= (right - left) % whole;
    bottom -= (bottom - top) % whole;
    cv::Mat region = image(cv::Range(top, bottom), cv::Range(left, right));
    if (whole > 1) {
        cv::Mat smaller;
        cv::resize(region, smaller, cv::Size((right - left) / whole, (bottom - top) / whole), 0, 0, cv::INTER_AREA);
        region = smaller;
    }
    double rest = factor * whole;
    if (rest < 1.0) {
        cv::Mat smaller;
        cv::Size size(std::max(1L, round_half_even(region.cols * rest)), std::max(1L, round_half_even(region.rows * rest)));
        cv::resize(region, smaller, size, 0, 0, cv::INTER_LINEAR);
        region = smaller;
    } else {
        region = region.clone();
    }
    auto boxes = detector_->detect(region);
    // Pixel edges scale; pixel centres sit half a pixel inside them.
    double scale_x = static_cast<double>(right - left) / region.cols, scale_y = static_cast<double>(bottom - top) / region.rows;
    for (auto& found : boxes) {
        found = {(found.x1 + 0.5) * scale_x - 0.5 + left, (found.y1 + 0.5) * scale_y - 0.5 + top,
                 (found.x2 + 0.5) * scale_x - 0.5 + left, (found.y2 + 0.5) * scale_y - 0.5 + top};
    }
    return boxes;
}

std::vector<Box> Tracker::match_detections(const std::vector<Box>& boxes) {
    if (tracks_.empty()) return boxes;
    std::vector<bool> claimed(boxes.size(), false);
    std::vector<Track> kept;
    for (auto& track : tracks_) {
        Box expected = detector_->box_conversion().landmarks_to_detector(track.box);
        bool matched = false;
        for (size_t j = 0; j < boxes.size(); ++j) {
            if (box_iou(expected, boxes[j]) >= config_.match_iou) {
                matched = true;
                claimed[j] = true;
            }
        }
        track.missed_detections = matched ? 0 : track.missed_detections + 1;
        if (track.missed_detections <= config_.max_missed_detections) kept.push_back(std::move(track));
    }
    tracks_ = std::move(kept);
    std::vector<Box> unclaimed;
    for (size_t j = 0; j < boxes.size(); ++j) {
        if (!claimed[j]) unclaimed.push_back(boxes[j]);
    }
    return unclaimed;
}

bool Tracker::plausible(const Points& points, float confidence, double size, std::optional<double> previous_size) {
    double total_x = 0, total_y = 0;
    for (const auto& point : points) {
        total_x += point.x;
        total_y += point.y;
    }
    if (!std::isfinite(total_x) || !std::isfinite(total_y)) {
        ++non_finite_faces_;
        return false;
    }
    if (!std::isnan(confidence) && confidence < config_.min_confidence) return false;
    double centre_x = total_x / points.size(), centre_y = total_y / points.size();
    if (!(0 <= centre_x && centre_x < frame_size_.width && 0 <= centre_y && centre_y < frame_size_.height)) return false;
    if (size < 8) return false;
    if (previous_size) {
        double ratio = size / *previous_size;
        if (!(0.6 < ratio && ratio < 1.6)) return false;
    }
    return true;
}

}  // namespace edgemark
