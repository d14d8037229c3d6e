// The convnet C++ library: everything a program needs to classify images with a checkpoint that
// `convnet train` wrote. Link convnet::convnet (find_package(convnet)); see examples/predict_image.
//   convnet::Model                 convnet/model.h: load a checkpoint, predict, class names, input size
//   convnet::decode_image_file     datasets/image_codec.h: a JPEG or PNG file as 8-bit RGB
//   convnet::Error, ConfigError    core/base/error.h: every failure, with a message naming its cause
#pragma once

#include "convnet/model.h"
#include "core/base/error.h"
#include "datasets/image_codec.h"
