import logging

from celery import shared_task

from orders.dispatch import PROCESS_ORDER
from orders.models import Order
from orders.workflow import order_process

logger = logging.getLogger(__name__)


@shared_task(bind=True, name=PROCESS_ORDER, max_retries=None)
def process_order(self, order_id: int) -> None:
    """Run the workflow; the workflow bounds the retries (settings ORDER_*_RETRY_MAX)."""
    try:
        step = order_process(order_id=order_id, attempt=self.request.retries)
    except Order.DoesNotExist:
        logger.error(
            "order %s does not exist; nothing to process", order_id, extra={"order_id": order_id}
        )
        return
    if not step.done:
        raise self.retry(countdown=step.retry_in)
