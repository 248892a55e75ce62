// The artifact card (runtime/card.py), read from the sidecar `<artifact>.json`.
#pragma once

#include <array>
#include <optional>
#include <string>

namespace edgemark {

struct CropRule {
    std::string box = "landmarks";  // which box the rule starts from: "landmarks" or "detector"
    double scale = 1.25;
    double shift_y = 0.0;
    std::optional<double> scale_y;  // unset: a square region
};

struct Normalisation {
    std::string channel_order = "RGB";
    std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
    std::array<float, 3> std{0.229f, 0.224f, 0.225f};
};

struct HeatmapOffsets {
    int grid_size = 0;
    double cell_spacing = 0;
    double offset_scale = 0;
    std::array<std::string, 3> channel_groups{"heatmap", "x_offset", "y_offset"};
    std::string offset_transform = "identity";
    double offset_divisor = 1.0;
};

struct Card {
    std::string layout;
    int num_points = 0;
    int input_size = 0;
    std::string input_name = "input";
    Normalisation normalisation;
    std::string output_kind;  // heatmap | coords | heatmap_offsets
    std::string decode = "centroid";
    int heatmap_stride = 0;
    std::optional<HeatmapOffsets> heatmap_offsets;
    std::optional<std::array<int, 2>> coords_slice;
    CropRule crop_rule;
    std::string precision = "fp32";
    std::string format = "onnx";
    std::optional<int> batch;  // a fixed batch; unset when dynamic
    std::string output_name;   // empty: the model's first output
    std::string json_text;     // the card as read, to compare with one embedded in the model
};

// The sidecar card of `artifact` (`model.onnx` -> `model.onnx.json`), checked against the artifact's
// format. Throws EdgemarkError with one line for a missing model, a missing, unreadable or
// inconsistent card.
Card read_card(const std::string& artifact);

// The card's fields from JSON text (`source` names it in errors).
Card card_from_json(const std::string& text, const std::string& source);

}  // namespace edgemark
