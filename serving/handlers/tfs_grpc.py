"""TensorFlow Serving over gRPC (`tensorflow.serving.PredictionService`, `tensorflow.serving.ModelService`):
thin adapters over the TF Serving data plane (serving.protocol.tfs_dataplane), on the server's one
gRPC port beside seqserve.v1 and KServe V2.

The stubs are TF Serving's own API, generated from its published descriptors (seqserve.tfs), so
TF Serving's clients (`prediction_service_pb2_grpc.PredictionServiceStub`, ...) work unchanged.
Methods this server does not offer (Regress, MultiInference, HandleReloadConfigRequest) answer
UNIMPLEMENTED, naming the ones it does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from seqserve.tfs.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)
from serving.handlers.grpc_errors import grpc_errors, refuse_unoffered
from serving.protocol.tfs_dataplane import Call, TfsDataPlane
from serving.protocol.tfs_types import (
    CheckCount,
    ClassifyCall,
    ModelSelection,
    PredictCall,
    check_metadata_fields,
)
from serving.protocol.tfs_types import metadata_to_grpc as metadata_message
from serving.protocol.v2_dataplane import SERVER_NAME

PREDICTION_SERVICE = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"]
MODEL_SERVICE = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"]
TFS_SERVICES = (PREDICTION_SERVICE.full_name, MODEL_SERVICE.full_name)


class TfsPredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, dataplane: TfsDataPlane) -> None:
        self._dataplane = dataplane

    async def _run(
        self,
        spec: model_pb2.ModelSpec,
        decode: Callable[[CheckCount], Call],
        context: grpc.aio.ServicerContext,
    ) -> Any:
        """Predict or Classify: decode, classify, encode the response."""
        call, result = await self._dataplane.run(
            ModelSelection.from_grpc(spec), decode, context.time_remaining()
        )
        return call.to_grpc(result)

    @grpc_errors
    async def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext
    ) -> predict_pb2.PredictResponse:
        return await self._run(
            request.model_spec, lambda check: PredictCall.from_grpc(request, check), context
        )

    @grpc_errors
    async def Classify(
        self, request: classification_pb2.ClassificationRequest, context: grpc.aio.ServicerContext
    ) -> classification_pb2.ClassificationResponse:
        return await self._run(
            request.model_spec, lambda check: ClassifyCall.from_grpc(request, check), context
        )

    @grpc_errors
    async def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        model = self._dataplane.model(ModelSelection.from_grpc(request.model_spec))
        check_metadata_fields(request.metadata_field)
        return metadata_message(model)


class TfsModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, dataplane: TfsDataPlane) -> None:
        self._dataplane = dataplane

    @grpc_errors
    async def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.aio.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        return self._dataplane.status(ModelSelection.from_grpc(request.model_spec))


refuse_unoffered(TfsPredictionServicer, PREDICTION_SERVICE, SERVER_NAME)
refuse_unoffered(TfsModelServicer, MODEL_SERVICE, SERVER_NAME)


def add_tfs_servicers_to_server(dataplane: TfsDataPlane, server: grpc.aio.Server) -> None:
    prediction = TfsPredictionServicer(dataplane)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(TfsModelServicer(dataplane), server)
