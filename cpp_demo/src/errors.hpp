// User-facing errors: one line (what was wrong, what was expected, what to do), no stack trace,
// as runtime/errors.py prints them. Exit 1 for bad input, 2 for bad usage.
#pragma once

#include <stdexcept>
#include <string>

namespace edgemark {

class EdgemarkError : public std::runtime_error {
public:
    explicit EdgemarkError(const std::string& message, int exit_code = 1)
        : std::runtime_error(message), exit_code_(exit_code) {}
    int exit_code() const { return exit_code_; }

private:
    int exit_code_;
};

class UsageError : public EdgemarkError {
public:
    explicit UsageError(const std::string& message) : EdgemarkError(message, 2) {}
};

// The first line of an exception message (OpenVINO's carry multi-line C++ traces).
inline std::string first_line(const std::string& text) {
    auto start = text.find_first_not_of(" \n\t");
    if (start == std::string::npos) return "unknown error";
    auto end = text.find('\n', start);
    return text.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

}  // namespace edgemark
