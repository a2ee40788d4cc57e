"""Nothing changes stock past the ledger: a trigger records every change of a bucket that the
application did not record itself (`ledger_seq` unchanged: a worker of a release before the
ledger, still running during a rolling deploy, or a fix by hand in the database) as an
`outside` movement, and gives a row inserted that way its opening balance. The migration
first takes the table's lock, so no change slips in between the ledger's last reading and the
trigger, then records the changes such workers made since the ledger began (its opening
balances were taken while they ran): each product's movements add up to its levels again."""

from django.db import migrations, models

NOTE = "changed outside the application (a release before the ledger, or by hand)"
COLUMNS = (
    "product_id, reason, on_hand_change, reserved_change, committed_change, on_hand_after, "
    "reserved_after, committed_after, note, created_at"
)

POSTGRESQL = f"""
LOCK TABLE inventory_stocklevel IN SHARE ROW EXCLUSIVE MODE;
CREATE OR REPLACE FUNCTION inventory_stock_outside_ledger() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO inventory_stockmovement ({COLUMNS}) VALUES (NEW.product_id, 'opening',
            NEW.on_hand, NEW.reserved, NEW.committed, NEW.on_hand, NEW.reserved,
            NEW.committed, '{NOTE}', STATEMENT_TIMESTAMP());
    ELSE
        INSERT INTO inventory_stockmovement ({COLUMNS}) VALUES (NEW.product_id, 'outside',
            NEW.on_hand - OLD.on_hand, NEW.reserved - OLD.reserved,
            NEW.committed - OLD.committed, NEW.on_hand, NEW.reserved, NEW.committed,
            '{NOTE}', STATEMENT_TIMESTAMP());
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER stock_opened_outside_ledger AFTER INSERT ON inventory_stocklevel
    FOR EACH ROW WHEN (NEW.ledger_seq = 0) EXECUTE FUNCTION inventory_stock_outside_ledger();
CREATE TRIGGER stock_changed_outside_ledger
    AFTER UPDATE OF on_hand, reserved, committed ON inventory_stocklevel FOR EACH ROW
    WHEN (NEW.ledger_seq = OLD.ledger_seq AND (NEW.on_hand, NEW.reserved, NEW.committed)
        IS DISTINCT FROM (OLD.on_hand, OLD.reserved, OLD.committed))
    EXECUTE FUNCTION inventory_stock_outside_ledger();
"""
POSTGRESQL_DROP = """
DROP TRIGGER IF EXISTS stock_opened_outside_ledger ON inventory_stocklevel;
DROP TRIGGER IF EXISTS stock_changed_outside_ledger ON inventory_stocklevel;
DROP FUNCTION IF EXISTS inventory_stock_outside_ledger();
"""

_SQLITE_NOW = "STRFTIME('%Y-%m-%d %H:%M:%f', 'now')"
SQLITE = [
    f"""CREATE TRIGGER stock_opened_outside_ledger AFTER INSERT ON inventory_stocklevel
    WHEN NEW.ledger_seq = 0 BEGIN
        INSERT INTO inventory_stockmovement ({COLUMNS}) VALUES (NEW.product_id, 'opening',
            NEW.on_hand, NEW.reserved, NEW.committed, NEW.on_hand, NEW.reserved,
            NEW.committed, '{NOTE}', {_SQLITE_NOW});
    END""",
    f"""CREATE TRIGGER stock_changed_outside_ledger
    AFTER UPDATE OF on_hand, reserved, committed ON inventory_stocklevel
    WHEN NEW.ledger_seq = OLD.ledger_seq AND (NEW.on_hand != OLD.on_hand
        OR NEW.reserved != OLD.reserved OR NEW.committed != OLD.committed) BEGIN
        INSERT INTO inventory_stockmovement ({COLUMNS}) VALUES (NEW.product_id, 'outside',
            NEW.on_hand - OLD.on_hand, NEW.reserved - OLD.reserved,
            NEW.committed - OLD.committed, NEW.on_hand, NEW.reserved, NEW.committed,
            '{NOTE}', {_SQLITE_NOW});
    END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS stock_opened_outside_ledger",
    "DROP TRIGGER IF EXISTS stock_changed_outside_ledger",
]

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
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(POSTGRESQL)
        else:
            for statement in SQLITE:
                cursor.execute(statement)
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        cursor.execute(HEAL, [NOTE, now])


def uninstall(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(POSTGRESQL_DROP)
        else:
            for statement in SQLITE_DROP:
                cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0005_stock_movements"),
    ]

    operations = [
        migrations.AddField(
            model_name="stocklevel",
            name="ledger_seq",
            field=models.BigIntegerField(db_default=0, default=1, editable=False),
        ),
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
