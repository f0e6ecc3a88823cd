//! Re-issuing an enrolment code (`POST /api/v1/registrations/{id}/code`): the statements run
//! inside the caller's transaction, which has locked the registration first.

use sqlx::AnyConnection;

use super::{CodeRow, Store, code_row};
use crate::Error;

impl Store {
    /// The code of a registration, read inside the caller's transaction.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn code_in(&self, conn: &mut AnyConnection, registration_id: &str) -> Result<Option<CodeRow>, Error> {
        let row = sqlx::query(
            "SELECT registration_id, code_hash, created_at, expires_at, attempts, used_at, serial \
             FROM enrolment_codes WHERE registration_id = $1",
        )
        .bind(registration_id)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(|r| code_row(&r, 0)).transpose()?)
    }

    /// Replaces a registration's unclaimed code with `row`'s hash, times and no attempts; the
    /// old hash is gone, so the old code no longer works. `false` when there is no unclaimed
    /// code (an enrolment claimed it meanwhile).
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn replace_code(&self, conn: &mut AnyConnection, row: &CodeRow) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE enrolment_codes SET code_hash = $1, created_at = $2, expires_at = $3, attempts = 0 \
             WHERE registration_id = $4 AND used_at IS NULL AND serial IS NULL",
        )
        .bind(&row.code_hash)
        .bind(row.created_at)
        .bind(row.expires_at)
        .bind(&row.registration_id)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Withdraws a registration's unclaimed code and its approvals and puts it back to
    /// `pending` (dual control: two officers approve again). `false` when there is no
    /// unclaimed code.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn reset_to_pending(
        &self,
        conn: &mut AnyConnection,
        registration_id: &str,
        now: i64,
    ) -> Result<bool, Error> {
        let done = sqlx::query(
            "DELETE FROM enrolment_codes WHERE registration_id = $1 AND used_at IS NULL AND serial IS NULL",
        )
        .bind(registration_id)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM approvals WHERE registration_id = $1")
            .bind(registration_id)
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE registrations SET status = 'pending', updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(registration_id)
            .execute(&mut *conn)
            .await?;
        Ok(true)
    }
}
