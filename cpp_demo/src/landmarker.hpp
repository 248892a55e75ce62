// Face boxes in a frame -> landmarks in that frame, on OpenVINO, driven only by the card
// (runtime/landmarker.py): crop rule -> warp -> normalise -> infer -> decode -> back-projection.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <openvino/openvino.hpp>

#include "card.hpp"
#include "geometry.hpp"

namespace edgemark {

struct FaceLandmarks {
    Points points;                       // (K, 2) frame pixels
    std::vector<float> point_confidence;  // (K,) heatmap peaks in [0, 1]; NaN for coords models
    float face_confidence = 0;           // mean point confidence (NaN for coords models)
};

// The model's raw output for N faces: values and shape (N, ...).
struct Output {
    std::vector<float> values;
    std::vector<size_t> shape;
};

// Output -> (N, K) points in input-square pixels and confidences (runtime.landmarker.decode_output
// before back-projection). Throws EdgemarkError when the output does not fit the card.
void decode_output(const Output& output, const Card& card, std::vector<Points>& points,
                   std::vector<std::vector<float>>& confidences);

// (N, 3, S, S) float32 model input of one BGR crop, written at `destination` (runtime.crop.normalise).
void normalise_crop(const cv::Mat& crop_bgr, const Normalisation& normalisation, float* destination);

// OpenVINO compile settings of runtime/backends/openvino_backend.py: latency hint, one stream,
// f32 execution for an fp32 card, the thread count when given.
ov::AnyMap compile_config(const std::string& precision, int threads);

class Landmarker {
public:
    Landmarker(const std::string& artifact, const Card& card, int threads = 0);

    // Landmarks for every box, in one batched inference (chunks of a fixed batch). `box_kind` says
    // what the boxes are ("detector" or "landmarks"); a box that is not the kind the crop rule
    // starts from is converted with `conversion`. `infer_seconds` accumulates the inference time.
    std::vector<FaceLandmarks> predict(const cv::Mat& frame_bgr, const std::vector<Box>& boxes,
                                       const std::string& box_kind, const BoxConversion& conversion,
                                       double* infer_seconds = nullptr);

    const Card& card() const { return card_; }

private:
    Output run(std::vector<float>& inputs, size_t count, double* infer_seconds);
    Output run_request(ov::InferRequest& request, float* inputs, size_t count);

    Card card_;
    std::string artifact_;
    ov::Core core_;
    ov::CompiledModel compiled_;
    ov::InferRequest request_;
    std::unique_ptr<ov::InferRequest> single_request_;  // batch-1 compilation of a dynamic-batch model
    size_t output_index_ = 0;
    int fixed_batch_ = 0;  // 0: dynamic
    std::vector<float> normalisation_tables_;  // (3, 256): the normalised value of each level, per model channel
};

}  // namespace edgemark
