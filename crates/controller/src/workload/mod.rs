//! Workload adapters: the primary copy of a Deployment or DaemonSet, its Services, tracked configs and autoscalers.
