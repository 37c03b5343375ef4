//! `ff_lane_registry`: the lanes executions were created on.

use sqlx::PgConnection;

/// Repository of `ff_lane_registry`.
pub(crate) struct LaneRepo;

impl LaneRepo {
    /// Record `lane_id` if it is new.
    pub(crate) async fn register(conn: &mut PgConnection, lane_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query!(
            r#"
            INSERT INTO ff_lane_registry (lane_id) VALUES ($1)
            ON CONFLICT ON CONSTRAINT ff_lane_registry_pkey DO NOTHING
            "#,
            lane_id,
        )
        .execute(conn)
        .await?;
        Ok(())
    }
}
