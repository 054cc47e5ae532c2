import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the admin login if it does not exist: username from JUNCTION_ADMIN_USER (admin), "
        "password from JUNCTION_ADMIN_PASSWORD (junction-admin). An existing user is left alone."
    )

    def handle(self, *args, **options):
        username = os.environ.get("JUNCTION_ADMIN_USER", "admin")
        password = os.environ.get("JUNCTION_ADMIN_PASSWORD", "junction-admin")
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Admin login {username!r} already exists.")
            return
        User.objects.create_superuser(username=username, password=password, email=f"{username}@example.com")
        self.stdout.write(self.style.SUCCESS(f"Created admin login {username!r} (password: {password})."))
