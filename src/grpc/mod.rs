//! The gRPC edge: request shape → one service call → response message.
//!
//! The generated traits (one per parent collection) are implemented by one
//! struct through one macro; every method delegates to a generic helper here,
//! so the nine collections share one implementation, as they do in `service`.

pub mod convert;
pub mod limit;

use crate::error::Error;
use crate::model::{OverviewSchema, ParentKind, StatusKind, StatusShape};
use crate::pb;
use crate::service::{PageRequest, Service};
use convert::{mask_path, EventMessage, OverviewMessage, ParentMessage, StatusMessage};
use prost_types::FieldMask;
use tonic::{Request, Response, Status};

/// The gRPC API over the shared service.
#[derive(Clone)]
pub struct GrpcApi {
    service: Service,
}

type Reply<T> = Result<Response<T>, Status>;

/// A server-streaming response of `M`s.
pub type Events<M> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<M, Status>> + Send>>;

impl GrpcApi {
    /// The API over `service`.
    pub fn new(service: Service) -> Self {
        GrpcApi { service }
    }

    async fn create_parent<M: ParentMessage>(&self, msg: Option<M>, field: &str) -> Result<M, Status> {
        let msg = msg.ok_or_else(|| required(field))?;
        let p = self.service.create_parent(M::KIND, msg.into_model()?).await?;
        Ok(M::from_model(p))
    }

    async fn get_parent<M: ParentMessage>(&self, req: pb::GetParentRequest) -> Result<M, Status> {
        Ok(M::from_model(self.service.get_parent(M::KIND, &req.id).await?))
    }

    async fn list_parents<M: ParentMessage>(&self, req: pb::ListParentsRequest) -> Result<(Vec<M>, String), Status> {
        let page = self
            .service
            .list_parents(M::KIND, &page_request(req.page_size, req.page_token)?)
            .await?;
        Ok((
            page.items.into_iter().map(M::from_model).collect(),
            page.next_token.unwrap_or_default(),
        ))
    }

    async fn update_parent<M: ParentMessage>(
        &self,
        msg: Option<M>,
        mask: Option<FieldMask>,
        field: &str,
    ) -> Result<M, Status> {
        let msg = msg.ok_or_else(|| required(field))?;
        let fields = update_fields(mask, || msg.populated());
        let id = msg.id().to_owned();
        let input = msg.into_model()?;
        Ok(M::from_model(
            self.service.update_parent(M::KIND, &id, &input, &fields).await?,
        ))
    }

    async fn delete_parent(&self, kind: ParentKind, req: pb::DeleteParentRequest) -> Reply<()> {
        self.service.delete_parent(kind, &req.id).await?;
        Ok(Response::new(()))
    }

    async fn create_status<M: StatusMessage>(
        &self,
        parent: ParentKind,
        parent_id: String,
        msg: Option<M>,
    ) -> Result<M, Status> {
        let msg = msg.ok_or_else(|| required(status_field(M::SHAPE)))?;
        let kind = status_kind::<M>(parent);
        Ok(M::from_model(
            self.service.create_status(kind, &parent_id, msg.into_model()?).await?,
        ))
    }

    async fn get_status<M: StatusMessage>(&self, parent: ParentKind, req: pb::GetStatusRequest) -> Result<M, Status> {
        let kind = status_kind::<M>(parent);
        Ok(M::from_model(
            self.service.get_status(kind, &req.parent_id, &req.id).await?,
        ))
    }

    async fn list_statuses<M: StatusMessage>(
        &self,
        parent: ParentKind,
        req: pb::ListStatusesRequest,
    ) -> Result<(Vec<M>, String), Status> {
        let kind = status_kind::<M>(parent);
        let page_req = page_request(req.page_size, req.page_token)?;
        let page = self.service.list_statuses(kind, &req.parent_id, &page_req).await?;
        Ok((
            page.items.into_iter().map(M::from_model).collect(),
            page.next_token.unwrap_or_default(),
        ))
    }

    async fn update_status<M: StatusMessage>(
        &self,
        parent: ParentKind,
        parent_id: String,
        msg: Option<M>,
        mask: Option<FieldMask>,
    ) -> Result<M, Status> {
        let msg = msg.ok_or_else(|| required(status_field(M::SHAPE)))?;
        let kind = status_kind::<M>(parent);
        let fields = update_fields(mask, || msg.populated());
        let input = msg.into_model()?;
        let updated = self
            .service
            .update_status(kind, &parent_id, &input.id, &input.body, &fields)
            .await?;
        Ok(M::from_model(updated))
    }

    async fn get_overview<M: OverviewMessage>(
        &self,
        parent: ParentKind,
        req: pb::GetStatusOverviewRequest,
    ) -> Reply<M> {
        let kind = StatusKind {
            parent,
            shape: M::SHAPE,
        };
        let overview = self
            .service
            .get_overview(kind, &req.parent_id, OverviewSchema::Beta)
            .await?;
        Ok(Response::new(M::from_model(overview)))
    }

    async fn watch<M: EventMessage>(&self, parent: ParentKind, req: pb::WatchStatusesRequest) -> Reply<Events<M>> {
        use futures::StreamExt;
        let kind = status_kind::<M::Status>(parent);
        let events = self
            .service
            .watch_statuses(kind, &req.parent_id, req.start_revision)
            .await?;
        Ok(Response::new(Box::pin(
            events.map(|e| e.map(M::from_event).map_err(Status::from)),
        )))
    }

    async fn delete_status(&self, kind: StatusKind, req: pb::DeleteStatusRequest) -> Reply<()> {
        self.service.delete_status(kind, &req.parent_id, &req.id).await?;
        Ok(Response::new(()))
    }
}

/// The Graph field names an update changes: the mask's paths, or, without a
/// mask, every populated field of the message (AIP-134).
fn update_fields(mask: Option<FieldMask>, populated: impl FnOnce() -> Vec<String>) -> Vec<String> {
    match mask {
        Some(m) => m.paths.iter().map(|p| mask_path(p)).collect(),
        None => populated(),
    }
}

/// The status collection a message type serves under `parent`.
fn status_kind<M: StatusMessage>(parent: ParentKind) -> StatusKind {
    StatusKind {
        parent,
        shape: M::SHAPE,
    }
}

fn required(field: &str) -> Status {
    Error::invalid(field, "is required").into()
}

fn status_field(shape: StatusShape) -> &'static str {
    match shape {
        StatusShape::User => "userStatus",
        StatusShape::Device => "deviceStatus",
    }
}

fn page_request(size: i32, token: String) -> Result<PageRequest, Status> {
    let size = usize::try_from(size).map_err(|_| Status::from(Error::invalid("pageSize", "must not be negative")))?;
    Ok(PageRequest {
        size: Some(size),
        token: Some(token),
    })
}

/// Implements one generated service trait by delegating to the helpers above.
macro_rules! collection_service {
    (
        $server:ident :: $trait:ident, $kind:expr,
        parent $P:ident via $pfield:literal {
            $create:ident($CreateReq:ident . $cf:ident), $get:ident, $list:ident -> $ListResp:ident . $lf:ident,
            $update:ident($UpdateReq:ident), $delete:ident
        }
        user $U:ident ($CreateU:ident, $UpdateU:ident, $ListU:ident)
        device $D:ident ($CreateD:ident, $UpdateD:ident, $ListD:ident)
        overviews $get_uo:ident -> $UO:ident, $get_do:ident -> $DO:ident
        events $UE:ident, $DE:ident
    ) => {
        #[tonic::async_trait]
        impl pb::$server::$trait for GrpcApi {
            async fn $create(&self, r: Request<pb::$CreateReq>) -> Reply<pb::$P> {
                Ok(Response::new(
                    self.create_parent(r.into_inner().$cf, $pfield).await?,
                ))
            }
            async fn $get(&self, r: Request<pb::GetParentRequest>) -> Reply<pb::$P> {
                Ok(Response::new(self.get_parent(r.into_inner()).await?))
            }
            async fn $list(&self, r: Request<pb::ListParentsRequest>) -> Reply<pb::$ListResp> {
                let ($lf, next_page_token) = self.list_parents(r.into_inner()).await?;
                Ok(Response::new(pb::$ListResp { $lf, next_page_token }))
            }
            async fn $update(&self, r: Request<pb::$UpdateReq>) -> Reply<pb::$P> {
                let r = r.into_inner();
                Ok(Response::new(
                    self.update_parent(r.$cf, r.update_mask, $pfield).await?,
                ))
            }
            async fn $delete(&self, r: Request<pb::DeleteParentRequest>) -> Reply<()> {
                self.delete_parent($kind, r.into_inner()).await
            }
            async fn create_user_status(&self, r: Request<pb::$CreateU>) -> Reply<pb::$U> {
                let r = r.into_inner();
                Ok(Response::new(
                    self.create_status($kind, r.parent_id, r.user_status).await?,
                ))
            }
            async fn get_user_status(&self, r: Request<pb::GetStatusRequest>) -> Reply<pb::$U> {
                Ok(Response::new(self.get_status($kind, r.into_inner()).await?))
            }
            async fn list_user_statuses(&self, r: Request<pb::ListStatusesRequest>) -> Reply<pb::$ListU> {
                let (user_statuses, next_page_token) = self.list_statuses($kind, r.into_inner()).await?;
                Ok(Response::new(pb::$ListU {
                    user_statuses,
                    next_page_token,
                }))
            }
            async fn update_user_status(&self, r: Request<pb::$UpdateU>) -> Reply<pb::$U> {
                let r = r.into_inner();
                Ok(Response::new(
                    self.update_status($kind, r.parent_id, r.user_status, r.update_mask)
                        .await?,
                ))
            }
            async fn delete_user_status(&self, r: Request<pb::DeleteStatusRequest>) -> Reply<()> {
                self.delete_status(
                    StatusKind {
                        parent: $kind,
                        shape: StatusShape::User,
                    },
                    r.into_inner(),
                )
                .await
            }
            async fn create_device_status(&self, r: Request<pb::$CreateD>) -> Reply<pb::$D> {
                let r = r.into_inner();
                Ok(Response::new(
                    self.create_status($kind, r.parent_id, r.device_status).await?,
                ))
            }
            async fn get_device_status(&self, r: Request<pb::GetStatusRequest>) -> Reply<pb::$D> {
                Ok(Response::new(self.get_status($kind, r.into_inner()).await?))
            }
            async fn list_device_statuses(&self, r: Request<pb::ListStatusesRequest>) -> Reply<pb::$ListD> {
                let (device_statuses, next_page_token) = self.list_statuses($kind, r.into_inner()).await?;
                Ok(Response::new(pb::$ListD {
                    device_statuses,
                    next_page_token,
                }))
            }
            async fn update_device_status(&self, r: Request<pb::$UpdateD>) -> Reply<pb::$D> {
                let r = r.into_inner();
                Ok(Response::new(
                    self.update_status($kind, r.parent_id, r.device_status, r.update_mask)
                        .await?,
                ))
            }
            async fn delete_device_status(&self, r: Request<pb::DeleteStatusRequest>) -> Reply<()> {
                self.delete_status(
                    StatusKind {
                        parent: $kind,
                        shape: StatusShape::Device,
                    },
                    r.into_inner(),
                )
                .await
            }
            type WatchUserStatusesStream = Events<pb::$UE>;
            type WatchDeviceStatusesStream = Events<pb::$DE>;
            async fn watch_user_statuses(
                &self,
                r: Request<pb::WatchStatusesRequest>,
            ) -> Reply<Self::WatchUserStatusesStream> {
                self.watch($kind, r.into_inner()).await
            }
            async fn watch_device_statuses(
                &self,
                r: Request<pb::WatchStatusesRequest>,
            ) -> Reply<Self::WatchDeviceStatusesStream> {
                self.watch($kind, r.into_inner()).await
            }
            async fn $get_uo(&self, r: Request<pb::GetStatusOverviewRequest>) -> Reply<pb::$UO> {
                self.get_overview($kind, r.into_inner()).await
            }
            async fn $get_do(&self, r: Request<pb::GetStatusOverviewRequest>) -> Reply<pb::$DO> {
                self.get_overview($kind, r.into_inner()).await
            }
        }
    };
}

collection_service! {
    device_compliance_policies_server::DeviceCompliancePolicies, ParentKind::DeviceCompliancePolicy,
    parent DeviceCompliancePolicy via "deviceCompliancePolicy" {
        create_device_compliance_policy(CreateDeviceCompliancePolicyRequest.device_compliance_policy),
        get_device_compliance_policy,
        list_device_compliance_policies -> ListDeviceCompliancePoliciesResponse.device_compliance_policies,
        update_device_compliance_policy(UpdateDeviceCompliancePolicyRequest),
        delete_device_compliance_policy
    }
    user DeviceComplianceUserStatus (
        CreateDeviceComplianceUserStatusRequest, UpdateDeviceComplianceUserStatusRequest,
        ListDeviceComplianceUserStatusesResponse
    )
    device DeviceComplianceDeviceStatus (
        CreateDeviceComplianceDeviceStatusRequest, UpdateDeviceComplianceDeviceStatusRequest,
        ListDeviceComplianceDeviceStatusesResponse
    )
    overviews get_user_status_overview -> DeviceComplianceUserOverview,
        get_device_status_overview -> DeviceComplianceDeviceOverview
    events DeviceComplianceUserStatusEvent, DeviceComplianceDeviceStatusEvent
}

collection_service! {
    mobile_app_configurations_server::MobileAppConfigurations, ParentKind::MobileAppConfiguration,
    parent ManagedDeviceMobileAppConfiguration via "managedDeviceMobileAppConfiguration" {
        create_managed_device_mobile_app_configuration(
            CreateManagedDeviceMobileAppConfigurationRequest.managed_device_mobile_app_configuration
        ),
        get_managed_device_mobile_app_configuration,
        list_managed_device_mobile_app_configurations
            -> ListManagedDeviceMobileAppConfigurationsResponse.managed_device_mobile_app_configurations,
        update_managed_device_mobile_app_configuration(UpdateManagedDeviceMobileAppConfigurationRequest),
        delete_managed_device_mobile_app_configuration
    }
    user ManagedDeviceMobileAppConfigurationUserStatus (
        CreateManagedDeviceMobileAppConfigurationUserStatusRequest,
        UpdateManagedDeviceMobileAppConfigurationUserStatusRequest,
        ListManagedDeviceMobileAppConfigurationUserStatusesResponse
    )
    device ManagedDeviceMobileAppConfigurationDeviceStatus (
        CreateManagedDeviceMobileAppConfigurationDeviceStatusRequest,
        UpdateManagedDeviceMobileAppConfigurationDeviceStatusRequest,
        ListManagedDeviceMobileAppConfigurationDeviceStatusesResponse
    )
    overviews get_user_status_summary -> ManagedDeviceMobileAppConfigurationUserSummary,
        get_device_status_summary -> ManagedDeviceMobileAppConfigurationDeviceSummary
    events ManagedDeviceMobileAppConfigurationUserStatusEvent, ManagedDeviceMobileAppConfigurationDeviceStatusEvent
}

collection_service! {
    device_configurations_server::DeviceConfigurations, ParentKind::DeviceConfiguration,
    parent DeviceConfiguration via "deviceConfiguration" {
        create_device_configuration(CreateDeviceConfigurationRequest.device_configuration),
        get_device_configuration,
        list_device_configurations -> ListDeviceConfigurationsResponse.device_configurations,
        update_device_configuration(UpdateDeviceConfigurationRequest),
        delete_device_configuration
    }
    user DeviceConfigurationUserStatus (
        CreateDeviceConfigurationUserStatusRequest, UpdateDeviceConfigurationUserStatusRequest,
        ListDeviceConfigurationUserStatusesResponse
    )
    device DeviceConfigurationDeviceStatus (
        CreateDeviceConfigurationDeviceStatusRequest, UpdateDeviceConfigurationDeviceStatusRequest,
        ListDeviceConfigurationDeviceStatusesResponse
    )
    overviews get_user_status_overview -> DeviceConfigurationUserOverview,
        get_device_status_overview -> DeviceConfigurationDeviceOverview
    events DeviceConfigurationUserStatusEvent, DeviceConfigurationDeviceStatusEvent
}

#[tonic::async_trait]
impl pb::diagnostics_server::Diagnostics for GrpcApi {
    async fn ping(&self, _: Request<()>) -> Reply<()> {
        Ok(Response::new(()))
    }
}
