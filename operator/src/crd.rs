//! The `EsmtpListener` custom resource (`postern.io/v1alpha1`).
//!
//! `spec.listeners` is the listener's own [`ListenerConfig`], so the CRD and the
//! listener's YAML file cannot drift apart; the rest of the spec says how the operator
//! runs those listeners as pods.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Affinity, EnvVar, LocalObjectReference, PodSecurityContext, ResourceRequirements,
        Toleration, TopologySpreadConstraint, Volume, VolumeMount,
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition},
};
use kube::{CustomResource, CustomResourceExt};
use postern_config::ListenerConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The API group of the operator's resources.
pub const GROUP: &str = "postern.io";
/// The most listeners one `EsmtpListener` may declare (bounds the cost of its CEL rules).
pub const MAX_LISTENERS: usize = 16;
/// The most replicas one `EsmtpListener` may ask for.
pub const MAX_REPLICAS: i32 = 64;
/// The most IP networks in one `relayHosts` or `relayFrom` list.
pub const MAX_NETWORKS: usize = 64;
/// The most entries in one listener's `domains` map.
pub const MAX_DOMAINS: usize = 64;
/// The longest `metadata.name`: children append `-config`, `-spool-NN` and use it as a label value.
pub const MAX_NAME_LEN: usize = 50;

/// The listener image used when `spec.image` is unset: the release matching this operator.
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/postern/postern:", env!("CARGO_PKG_VERSION"));

/// Desired state of a group of Postern ESMTP listeners.
// The printer columns repeat `type_ = "string"`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "postern.io",
    version = "v1alpha1",
    kind = "EsmtpListener",
    namespaced,
    shortname = "esmtp",
    category = "postern",
    status = "EsmtpListenerStatus",
    doc = "A group of Postern ESMTP listeners: one ConfigMap, a Deployment and spool claim per replica, a Service and a PodDisruptionBudget.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.ready",
        description = "Replicas that are ready with the current generation, of those desired"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        description = "Why the listener is or is not Ready"
    ),
    printcolumn(
        name = "Listen",
        type_ = "string",
        json_path = ".status.listen",
        description = "Ports the Service exposes"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EsmtpListenerSpec {
    /// The listeners, each one `start_esmtp_listener` call with the listener's own fields.
    /// Only the port of `listen` matters here: the pod binds every address on an
    /// unprivileged port and the Service maps the declared port to it.
    #[schemars(length(min = 1, max = 16), extend("x-kubernetes-validations" = listeners_rules()))]
    pub listeners: Vec<ListenerConfig>,
    /// How many listener pods to run; each has its own Deployment and spool claim.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 64))]
    pub replicas: i32,
    /// The listener image; defaults to the operator's `--listener-image` (the Postern
    /// release matching the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// When the kubelet pulls the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// CPU and memory requests and limits of the listener container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The spool volume of each replica.
    #[serde(default)]
    pub storage: StorageSpec,
    /// The Service in front of the replicas.
    #[serde(default)]
    pub service: ServiceSpec,
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Scheduling constraints of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Annotations added to every listener pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// The pods' service account (its token is mounted only for `vaultRole` sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// Secrets with registry credentials for pulling the listener image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// The pods' PriorityClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// How the pods spread over the cluster. Unset: the replicas spread across nodes
    /// (`kubernetes.io/hostname`, `maxSkew: 1`, `ScheduleAnyway`); `[]`: no constraint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Labels added to every listener pod (the operator's own labels win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Environment variables of the listener container, e.g. `VAULT_CACERT`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvVar>,
    /// Extra volumes of the pods (e.g. a CA bundle for Vault).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub volumes: Vec<Volume>,
    /// Where the extra volumes are mounted in the listener container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub volume_mounts: Vec<VolumeMount>,
    /// The pods' security context. Unset: non-root, `RuntimeDefault` seccomp, and the
    /// operator's `--listener-fs-group` (none on OpenShift, which assigns one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityContext>,
    /// How a changed pod template is rolled out.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// How replicas past `replicas` are drained before they are removed.
    #[serde(default)]
    pub scale_down: ScaleDownSpec,
}

/// Scale-down: a replica past `replicas` leaves the Service, then drains (delivers what
/// it queued, accepting nothing new) before its Deployment, and per
/// `storage.whenScaled` its claim, are removed. The annotation
/// `postern.io/force-scale-down: "true"` removes without waiting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleDownSpec {
    /// Seconds a surplus replica may take to drain before the listener turns `Stalled`
    /// (reason `DrainTimeout`); the operator keeps waiting after that.
    #[serde(default = "default_drain_timeout")]
    #[schemars(range(min = 0, max = 604800))]
    pub drain_timeout_seconds: i64,
}

impl Default for ScaleDownSpec {
    fn default() -> Self {
        Self {
            drain_timeout_seconds: default_drain_timeout(),
        }
    }
}

fn default_drain_timeout() -> i64 {
    3600
}

/// How a changed pod template reaches the replicas: one ordinal at a time, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    /// Seconds one ordinal may take to become Available before the listener turns
    /// `Stalled` (the Deployment's `progressDeadlineSeconds`).
    #[serde(default = "default_progress_deadline")]
    #[schemars(range(min = 5, max = 3600))]
    pub progress_deadline_seconds: i32,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            progress_deadline_seconds: default_progress_deadline(),
        }
    }
}

fn default_progress_deadline() -> i32 {
    600
}

/// When the kubelet pulls the listener image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    /// Pull at every pod start.
    Always,
    /// Pull only when the node lacks the image.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// The spool volume of each replica, and what happens to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "quantity(string(self.size)).compareTo(quantity(string(oldSelf.size))) >= 0",
    "message": "storage.size may only grow: a bound claim cannot shrink",
}, {
    "rule": "has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)",
    "message": "storage.storageClassName is immutable: the existing claims keep their class",
}]))]
pub struct StorageSpec {
    /// Size of each replica's spool claim.
    #[serde(default = "default_size")]
    pub size: Quantity,
    /// Storage class of the claims; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// What happens to a replica's spool claim when `replicas` shrinks past it.
    #[serde(default)]
    pub when_scaled: ClaimPolicy,
    /// What happens to the spool claims when the `EsmtpListener` is deleted.
    #[serde(default)]
    pub when_deleted: ClaimPolicy,
}

/// What happens to a spool claim that is no longer used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClaimPolicy {
    /// Keep the claim (and the messages in it); a later replica with the same ordinal reuses it.
    #[default]
    Retain,
    /// Delete the claim: messages still spooled in it are lost.
    Delete,
}

/// The Service in front of the listener pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.externalTrafficPolicy) || self.type != 'ClusterIP'",
    "message": "externalTrafficPolicy needs service.type NodePort or LoadBalancer",
}]))]
pub struct ServiceSpec {
    /// The Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Annotations of the Service, e.g. for a cloud load balancer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Whether external traffic is routed to node-local pods only (keeps client IPs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<TrafficPolicy>,
}

/// Kubernetes Service types the operator can create.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Also through a cloud load balancer.
    LoadBalancer,
}

/// A Service's `externalTrafficPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TrafficPolicy {
    /// Route to any ready pod (client IPs are lost).
    Cluster,
    /// Route only to pods on the receiving node (client IPs are kept).
    Local,
}

/// Observed state of an `EsmtpListener`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EsmtpListenerStatus {
    /// The `metadata.generation` the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Listener pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Listener pods that are ready and run the current generation.
    #[serde(default)]
    pub ready_replicas: i32,
    /// `ready/desired`, e.g. `2/3` (the `Ready` printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// The label selector of the listener's pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The listener image the replicas are rolled to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Spool claims of ordinals past `replicas` that were kept (`whenScaled: Retain`),
    /// with the messages still in them; an ordinal that comes back takes its claim again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retained_claims: Vec<String>,
    /// Ports the Service exposes, e.g. `25,587`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Hash of the rendered listener configuration the pods should run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// `Ready`, `Reconciling` and `Stalled`, as kstatus, `kubectl wait` and Helm read them.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

fn default_replicas() -> i32 {
    1
}

fn default_size() -> Quantity {
    Quantity("1Gi".into())
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_size(),
            storage_class_name: None,
            when_scaled: ClaimPolicy::default(),
            when_deleted: ClaimPolicy::default(),
        }
    }
}

/// The CEL port expression for one listener item `l` (its text after the last `:`).
const PORT_OF: &str = "int(l.listen.substring(l.listen.lastIndexOf(':') + 1))";

fn listeners_rules() -> Value {
    let port_of = |var: &str| PORT_OF.replace("l.", &format!("{var}."));
    json!([
        {
            "rule": format!("self.all(l, {} >= 1 && {} <= 65535)", port_of("l"), port_of("l")),
            "message": "every listen port must be 1-65535, e.g. listen: 0.0.0.0:25",
        },
        {
            "rule": format!(
                "self.all(a, self.exists_one(b, {} == {}))",
                port_of("b"),
                port_of("a")
            ),
            "message": "each listener needs its own port: the Service exposes one port per listener, so two listen addresses may not share a port",
        },
        {
            "rule": "self.all(l, (has(l.requireProxyProtocol) && l.requireProxyProtocol) == (has(l.proxyProtocolFrom) && l.proxyProtocolFrom.size() > 0))",
            "message": "requireProxyProtocol: true and a non-empty proxyProtocolFrom (the load balancers trusted to tell the client's address) go together",
        },
        {
            "rule": "self.all(l, !(has(l.allowXclient) && l.allowXclient) || (has(l.xclientFrom) && l.xclientFrom.size() > 0))",
            "message": "allowXclient: true needs a non-empty xclientFrom (the proxies trusted to tell the client's address and login)",
        },
    ])
}

/// The `CustomResourceDefinition` of `EsmtpListener`, as `postern-operator crd` prints it.
///
/// Adds what the derive cannot say: bounds on `listen` strings that keep the CEL rules
/// within the API server's cost budget, and rules on `metadata.name`.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    let mut crd = EsmtpListener::crd();
    for version in &mut crd.spec.versions {
        let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        let mut value = serde_json::to_value(&*schema).expect("a schema serializes");
        bound_strings(&mut value);
        refuse_inline_tokens(&mut value);
        value["x-kubernetes-validations"] = json!([
            {
                "rule": format!("self.metadata.name.size() <= {MAX_NAME_LEN}"),
                "message": format!("metadata.name must be at most {MAX_NAME_LEN} characters: it names the listener's Deployments, spool claims and labels"),
            },
            {
                "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
                "message": "metadata.name must start with a letter and hold only lowercase letters, digits and '-': it is also the Service's name",
            },
        ]);
        *schema = serde_json::from_value(value).expect("the bounded schema deserializes");
    }
    crd
}

/// Bounds every string, list and map on the way to a CEL rule, so the API server can
/// estimate the rules' cost (`listen` strings, IP networks, their lists and the domain
/// map), and drops integer formats the API server does not know.
fn bound_strings(schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    let is_string = map.get("type") == Some(&json!("string"));
    let has_rules = map.contains_key("x-kubernetes-validations");
    let has_pattern = map.contains_key("pattern");
    if is_string && (has_rules || has_pattern) && !map.contains_key("maxLength") {
        map.insert("maxLength".into(), json!(64));
    }
    // Every integer gets the bounds of its Rust type, so the API server refuses what the
    // operator could not read; the API server knows int32 and int64 only, so schemars'
    // unsigned formats (which earn a warning) go.
    let bounds = match map.get("format").and_then(Value::as_str) {
        Some("uint32") => Some((0, i64::from(u32::MAX))),
        // The API server reads bounds as doubles: the largest integer a double holds exactly.
        Some("uint64") => Some((0, (1_i64 << 53) - 1)),
        Some("uint16") => Some((0, i64::from(u16::MAX))),
        Some("uint8") => Some((0, i64::from(u8::MAX))),
        Some("int32") => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
        _ => None,
    };
    if let Some((min, max)) = bounds {
        map.entry("minimum").or_insert_with(|| json!(min));
        map.entry("maximum").or_insert_with(|| json!(max));
        if map.get("format").and_then(Value::as_str) != Some("int32") {
            map.remove("format");
        }
    }
    let is_array = map.get("type") == Some(&json!("array"));
    if is_array && !map.contains_key("maxItems") && map.get("items").is_some_and(has_rule) {
        map.insert("maxItems".into(), json!(MAX_NETWORKS));
    }
    let is_map = map.get("type") == Some(&json!("object"));
    if is_map
        && !map.contains_key("maxProperties")
        && map.get("additionalProperties").is_some_and(has_rule)
    {
        map.insert("maxProperties".into(), json!(MAX_DOMAINS));
    }
    for value in map.values_mut() {
        match value {
            Value::Object(_) => bound_strings(value),
            Value::Array(items) => items.iter_mut().for_each(bound_strings),
            _ => {}
        }
    }
}

/// Adds a rule refusing `vaultToken` to every key source: an inline token would be
/// written into the listener's ConfigMap (use `vaultTokenSecret` or `vaultRole`).
fn refuse_inline_tokens(schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    if map
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| p.contains_key("vaultToken"))
    {
        let rules = map
            .entry("x-kubernetes-validations")
            .or_insert_with(|| json!([]));
        if let Some(rules) = rules.as_array_mut() {
            rules.push(json!({
                "rule": "!has(self.vaultToken)",
                "message": INLINE_TOKEN_MESSAGE,
            }));
        }
    }
    for value in map.values_mut() {
        match value {
            Value::Object(_) => refuse_inline_tokens(value),
            Value::Array(items) => items.iter_mut().for_each(refuse_inline_tokens),
            _ => {}
        }
    }
}

/// Why an inline `vaultToken` is refused, at admission and by the operator.
pub const INLINE_TOKEN_MESSAGE: &str = "vaultToken is not allowed in an EsmtpListener: it would be written into a ConfigMap in plain text; put the token in a Secret and use vaultTokenSecret, or use vaultRole";

/// Whether a schema or anything inside it carries a CEL rule.
fn has_rule(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => {
            map.contains_key("x-kubernetes-validations") || map.values().any(has_rule)
        }
        Value::Array(items) => items.iter().any(has_rule),
        _ => false,
    }
}

/// The CRD as YAML, exactly as checked in under `crds/`.
pub fn crd_yaml() -> String {
    let body = serde_yaml::to_string(&crd()).expect("the CRD serializes to YAML");
    format!(
        "# Generated by `postern-operator crd`; do not edit. Regenerate with:\n#   cargo run -p postern-operator -- crd > crds/esmtplisteners.postern.io.yaml\n{body}"
    )
}

impl EsmtpListener {
    /// The listener image: `spec.image`, else `default` (the operator's `--listener-image`).
    pub fn image<'a>(&'a self, default: &'a str) -> &'a str {
        self.spec.image.as_deref().unwrap_or(default)
    }
}
