"""Print a new personal API token for a user (for scripts and tests):

    manage.py create_api_token USERNAME --name NAME
"""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from marketplace.exceptions import DomainError
from marketplace.services.tokens import create_api_token


class Command(BaseCommand):
    help = "Create a personal API token for USERNAME and print its secret (shown only now)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="what the token is for, e.g. ci-pipeline")

    def handle(self, *args, username, name, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"no user {username!r}") from None
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive")
        try:
            _, secret = create_api_token(user=user, name=name)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(secret)
