#pragma once
#include "fathom/core/options.h"
