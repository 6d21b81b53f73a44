// refit: the library a trainer links to refit its weights into the inference
// engine's layout. One include for the whole public API.
#ifndef REFIT_REFIT_H_
#define REFIT_REFIT_H_

#include "refit/communicator.h"
#include "refit/core/format/dst_format.h"
#include "refit/core/layout.h"
#include "refit/core/model_spec.h"
#include "refit/core/status.h"
#include "refit/local_world.h"
#include "refit/mpi_communicator.h"
#include "refit/sharded_model.h"
#include "refit/socket_communicator.h"
#include "refit/swap.h"
#include "refit/tensor_view.h"

#endif  // REFIT_REFIT_H_
