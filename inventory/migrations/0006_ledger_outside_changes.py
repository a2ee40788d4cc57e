"""Nothing changes stock past the ledger. When a transaction that changed (or made) a stock row
commits, a deferred trigger compares the row with the newest movement of its product: if the
movement does not leave the row's levels, the difference is recorded as an `outside`
movement (or, for a row with no movement at all, its `opening`). Whoever wrote the change
and its movements in that transaction (this release, the release before it) leaves nothing
to record; a worker of a release before the ledger, still running during a rolling deploy,
or a fix by hand in the database, is recorded. The migration takes the table's lock first,
so no change slips in between the check of what exists and the trigger, then records what
such workers changed since the ledger began (its opening balances were taken while they
ran): each product's movements add up to its levels again.

PostgreSQL only: the embedded SQLite is one machine running one release (and has no deferred
triggers)."""

from django.db import migrations, models

NOTE = "changed outside the application (a release before the ledger, or by hand)"
COLUMNS = (
    "product_id, reason, on_hand_change, reserved_change, committed_change, on_hand_after, "
    "reserved_after, committed_after, note, created_at"
)

INSTALL = f"""
LOCK TABLE inventory_stocklevel IN SHARE ROW EXCLUSIVE MODE;
CREATE OR REPLACE FUNCTION inventory_stock_ledger_check() RETURNS trigger AS $$
DECLARE
    level inventory_stocklevel%ROWTYPE;
    last inventory_stockmovement%ROWTYPE;
BEGIN
    SELECT * INTO level FROM inventory_stocklevel WHERE product_id = NEW.product_id;
    IF NOT FOUND THEN
        RETURN NULL;  -- deleted since
    END IF;
    SELECT * INTO last FROM inventory_stockmovement WHERE product_id = NEW.product_id
        ORDER BY id DESC LIMIT 1;
    IF NOT FOUND THEN
        INSERT INTO inventory_stockmovement ({COLUMNS}) VALUES (level.product_id, 'opening',
            level.on_hand, level.reserved, level.committed, level.on_hand, level.reserved,
            level.committed, '{NOTE}', STATEMENT_TIMESTAMP());
    ELSIF (last.on_hand_after, last.reserved_after, last.committed_after)
            IS DISTINCT FROM (level.on_hand, level.reserved, level.committed) THEN
        INSERT INTO inventory_stockmovement ({COLUMNS}) VALUES (level.product_id, 'outside',
            level.on_hand - last.on_hand_after, level.reserved - last.reserved_after,
            level.committed - last.committed_after, level.on_hand, level.reserved,
            level.committed, '{NOTE}', STATEMENT_TIMESTAMP());
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER stock_ledger_check
    AFTER INSERT OR UPDATE OF on_hand, reserved, committed ON inventory_stocklevel
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION inventory_stock_ledger_check();
"""
UNINSTALL = """
DROP TRIGGER IF EXISTS stock_ledger_check ON inventory_stocklevel;
DROP FUNCTION IF EXISTS inventory_stock_ledger_check();
"""

# Each product whose movements do not add up to its levels gets the difference, as a change
# from outside (or its opening balance, if it has no movement at all).
HEAL = f"""
INSERT INTO inventory_stockmovement ({COLUMNS})
SELECT s.product_id, CASE WHEN m.product_id IS NULL THEN 'opening' ELSE 'outside' END,
    s.on_hand - COALESCE(m.on_hand, 0), s.reserved - COALESCE(m.reserved, 0),
    s.committed - COALESCE(m.committed, 0), s.on_hand, s.reserved, s.committed, %s, %s
FROM inventory_stocklevel AS s LEFT JOIN (
    SELECT product_id, SUM(on_hand_change) AS on_hand, SUM(reserved_change) AS reserved,
        SUM(committed_change) AS committed
    FROM inventory_stockmovement GROUP BY product_id
) AS m ON m.product_id = s.product_id
WHERE m.product_id IS NULL OR s.on_hand != m.on_hand OR s.reserved != m.reserved
    OR s.committed != m.committed
ORDER BY s.product_id
"""


def install(apps, schema_editor):
    from django.utils import timezone

    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(INSTALL)
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        cursor.execute(HEAL, [NOTE, now])


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(UNINSTALL)


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0005_stock_movements"),
    ]

    operations = [
        migrations.AlterField(
            model_name="stockmovement",
            name="reason",
            field=models.CharField(
                choices=[
                    ("opening", "Opening balance"),
                    ("reserve", "Reserved for an order"),
                    ("release", "Released by an order"),
                    ("commit", "Committed (paid)"),
                    ("ship", "Shipped"),
                    ("warehouse_sync", "Warehouse sync"),
                    ("shipment_answer", "Shipment answer"),
                    ("operator", "Set by an operator"),
                    ("outside", "Changed outside the application"),
                ],
                max_length=16,
            ),
        ),
        migrations.RunPython(install, uninstall),
    ]
