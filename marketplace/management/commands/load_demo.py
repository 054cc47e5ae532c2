from django.core.management.base import BaseCommand

from marketplace.demo.catalog import DemoLoader


class Command(BaseCommand):
    help = "Load the demo catalog (idempotent: a second run changes nothing)."

    def handle(self, *args, **options):
        created = DemoLoader().load()
        if created:
            for line in created:
                self.stdout.write(f"  created {line}")
            self.stdout.write(self.style.SUCCESS(f"Demo catalog loaded ({len(created)} objects)."))
        else:
            self.stdout.write("Demo catalog already loaded; nothing changed.")
